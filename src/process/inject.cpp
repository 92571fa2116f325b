// inject_library: dlopen a shared library inside the target through a remote call.
//
// dlopen's address: glibc >= 2.34 exports dlopen from libc.so.6 (twice in .dynsym: the
// default version GLIBC_2.34 and a GLIBC_2.2.5 compat alias at the same address). Older glibc
// has only __libc_dlopen_mode(name, mode | __RTLD_DLOPEN), which is what libdl wraps; its error
// text is not available through dlerror then. The runtime address is the .dynsym value plus
// the load bias of the libc mapping.
#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <optional>
#include <thread>

#include "common/kill_point.h"
#include "common/proc_maps.h"
#include "elf/elf_file.h"
#include "process/process.h"
#include "process/seccomp_check.h"

namespace lg {

namespace {

using Clock = std::chrono::steady_clock;
constexpr uint64_t kRtldDlopenFlag = 0x80000000;  // glibc's __RTLD_DLOPEN

bool is_libc_path(const std::string& path) {
  auto slash = path.rfind('/');
  std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  if (base == "libc.so.6") return true;
  // Old style "libc-2.31.so".
  return base.rfind("libc-", 0) == 0 && base.size() > 8 && base.compare(base.size() - 3, 3, ".so") == 0 &&
         std::all_of(base.begin() + 5, base.end() - 3, [](char c) { return (c >= '0' && c <= '9') || c == '.'; });
}

struct LibcFunctions {
  RemoteAddr dlopen;
  RemoteAddr dlerror;     // null when unknown
  bool libc_dlopen_mode;  // dlopen is __libc_dlopen_mode: add __RTLD_DLOPEN to the mode
};

// A defined plain function (STT_FUNC, not an IFUNC) in .dynsym. Its versions share one
// address in glibc (dlopen@@GLIBC_2.34 and dlopen@GLIBC_2.2.5), so the first one found is it.
std::optional<uint64_t> dynamic_function(const ElfFile& elf, std::string_view name) {
  for (const ElfSymbol& s : elf.dynamic_symbols())
    if (s.defined() && s.name == name && s.type == STT_FUNC) return s.value;
  return std::nullopt;
}

Result<LibcFunctions> find_libc_functions(pid_t pid) {
  LG_TRY(auto maps, read_proc_maps(pid));
  const Mapping* first = nullptr;
  for (const Mapping& m : maps)
    if (m.is_file() && is_libc_path(m.path) && (!first || m.range.lo < first->range.lo)) first = &m;
  if (!first)
    return make_error(ErrorKind::not_found,
                      "process {} has no libc.so.6 mapped (statically linked?): cannot call dlopen in it", pid);
  // Open the file the process sees: through its root (containers, chroots), or the mapping
  // itself when the path is gone (a libc upgraded since the process started).
  auto elf = ElfFile::open(fmt::format("/proc/{}/root{}", pid, first->path));
  if (!elf)
    elf = ElfFile::open(fmt::format("/proc/{}/map_files/{:x}-{:x}", pid, first->range.lo.value, first->range.hi.value));
  if (!elf) return std::move(elf).error().context(fmt::format("reading libc of process {}", pid));
  auto vaddr = elf->vaddr_of_offset(first->offset);
  if (!vaddr)
    return make_error(ErrorKind::mismatch, "libc mapping of process {} at offset {:#x} is in no PT_LOAD of {}", pid,
                      first->offset, first->path);
  const uint64_t bias = first->range.lo.value - *vaddr;

  LibcFunctions out{};
  if (auto a = dynamic_function(*elf, "dlopen")) {
    out.dlopen = RemoteAddr(bias + *a);
  } else if (auto b = dynamic_function(*elf, "__libc_dlopen_mode")) {
    out.dlopen = RemoteAddr(bias + *b);
    out.libc_dlopen_mode = true;
  } else {
    return make_error(ErrorKind::not_found, "{} exports neither dlopen nor __libc_dlopen_mode", first->path);
  }
  if (!out.libc_dlopen_mode)
    if (auto e = dynamic_function(*elf, "dlerror")) out.dlerror = RemoteAddr(bias + *e);
  return out;
}

Result<std::string> read_remote_string(const Process& process, RemoteAddr addr, size_t max) {
  std::string s;
  uint8_t chunk[256];
  while (s.size() < max) {
    // Read up to the end of the page only: the next page may not be mapped.
    size_t to_page_end = 4096 - ((addr.value + s.size()) & 4095);
    size_t n = std::min({sizeof chunk, to_page_end, max - s.size()});
    LG_TRY_VOID(process.read_memory(addr + static_cast<int64_t>(s.size()), std::span<uint8_t>(chunk, n)));
    for (size_t i = 0; i < n; ++i) {
      if (chunk[i] == 0) return s;
      s.push_back(static_cast<char>(chunk[i]));
    }
  }
  return s;
}

// dlopen in one stopped thread; a failed dlopen is an io error carrying dlerror's text.
Result<void> dlopen_in(Process& process, pid_t tid, const LibcFunctions& fns, const std::string& path,
                       std::chrono::milliseconds timeout) {
  uint64_t mode = RTLD_NOW | (fns.libc_dlopen_mode ? kRtldDlopenFlag : 0);
  RemoteArg args[] = {RemoteArg::string(path), RemoteArg::of(mode)};
  LG_TRY(uint64_t handle, process.remote_call(tid, fns.dlopen, args, timeout));
  if (handle != 0) return ok_result();
  std::string why = "no dlerror text available";
  if (!fns.dlerror.is_null()) {
    auto text = process.remote_call(tid, fns.dlerror, {}, std::chrono::milliseconds(2000));
    if (text && *text != 0) {
      if (auto s = read_remote_string(process, RemoteAddr(*text), 4096)) why = *s;
    }
  }
  return make_error(ErrorKind::io, "dlopen(\"{}\") in process {} failed: {}", path, process.pid(), why);
}

}  // namespace

Error injection_departure_error(const Process& process, const std::string& library_path) {
  const bool exec = process.departure() && process.departure()->how == Process::Departure::How::exec;
  return Error(ErrorKind::thread_died,
               fmt::format("{} while {} was being loaded into it{}", process.departure_text(), library_path,
                           exec ? ": nothing of it is in the new program" : ""),
               0, exec ? fmt::format("`livegraft status {}` looks at the new program", process.pid()) : std::string());
}

Result<void> inject_library(Process& process, const std::string& library_path,
                            const std::function<Result<bool>(pid_t tid, const Registers& regs)>& thread_is_safe,
                            std::chrono::milliseconds timeout, std::chrono::milliseconds call_timeout) {
  const pid_t pid = process.pid();
  if (library_path.empty() || library_path[0] != '/')
    return make_error(ErrorKind::invalid_argument, "library path '{}' must be absolute (the target's cwd is not ours)",
                      library_path);
  if (::access(fmt::format("/proc/{}/root{}", pid, library_path).c_str(), R_OK) != 0)
    return make_errno_error(ErrorKind::not_found, "library {} as seen by process {}", library_path, pid);
  LG_TRY(const LibcFunctions fns, find_libc_functions(pid));

  const auto deadline = Clock::now() + timeout;
  auto backoff = std::chrono::milliseconds(1);
  std::string last_refusal;
  // A step that found a thread gone tries the next thread, unless the whole process went away
  // (or replaced its program): then nothing is left to try, and the reason is said at once. A
  // dlopen cut short by either leaves nothing behind: the image it was loading into is gone.
  auto departed = [&]() -> std::optional<Error> {
    if (!process.check_departed()) return std::nullopt;
    return injection_departure_error(process, library_path);
  };
  // Every thread is tried once however short [timeout] is (a tiny --timeout means "do not wait
  // for a safe point", not "do not look"); later rounds only until the deadline.
  for (bool first_round = true;; first_round = false) {
    if (process.threads().empty())
      if (auto gone = departed()) return *gone;
    for (pid_t tid : process.threads()) {
      if (!first_round && Clock::now() >= deadline) break;
      auto stopped = ThreadStopScope::stop(process, tid, std::min(call_timeout, std::chrono::milliseconds(1000)));
      if (!stopped) {
        if (stopped.error().kind == ErrorKind::thread_died) {
          if (auto gone = departed()) return *gone;
          continue;
        }
        if (stopped.error().kind == ErrorKind::timeout) continue;
        return std::move(stopped).error();
      }
      kill_point("inject.thread_stopped");
      // Before anything is changed: the syscalls this thread and the agent's thread (its
      // child) will make must pass its seccomp filters (seccomp_check.h).
      LG_TRY_VOID(check_seccomp_allows_injection(pid, tid));
      auto regs = process.get_regs(tid);
      if (!regs) {
        if (regs.error().kind == ErrorKind::thread_died) {
          if (auto gone = departed()) return *gone;
          continue;
        }
        return std::move(regs).error();
      }
      auto safe = thread_is_safe(tid, *regs);
      if (!safe) {
        if (safe.error().kind == ErrorKind::thread_died) {
          if (auto gone = departed()) return *gone;
          continue;
        }
        return std::move(safe).error().context(fmt::format("checking thread {}", tid));
      }
      if (!*safe) {
        last_refusal = fmt::format("thread {} at pc {:#x}", tid, regs->rip);
        continue;
      }
      auto loaded = dlopen_in(process, tid, fns, library_path, call_timeout);
      kill_point("inject.dlopen_done");
      auto resumed = stopped->resume();
      if (!loaded || !resumed)
        if (auto gone = departed()) return *gone;
      if (!loaded && loaded.error().kind == ErrorKind::thread_died) continue;
      if (!loaded) {
        Error e = std::move(loaded).error();
        if (!resumed) e.message += fmt::format("; resuming the thread failed too: {}", resumed.error().message);
        return e;
      }
      if (!resumed)
        return std::move(resumed).error().context(
            fmt::format("{} was loaded into process {}, but the borrowed thread {} could not be resumed", library_path,
                        pid, tid));
      if (auto gone = departed()) return *gone;  // an execve or exit noticed by now
      return ok_result();
    }
    if (Clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::min(backoff, std::chrono::duration_cast<std::chrono::milliseconds>(
                                                      deadline - Clock::now())));
    backoff = std::min(backoff * 2, std::chrono::milliseconds(100));
    (void)process.poll_events();
  }
  return Error(ErrorKind::unsafe,
               fmt::format("could not inject {} into process {} within {} ms: no thread was at a safe point{}",
                           library_path, pid, timeout.count(),
                           last_refusal.empty() ? "" : fmt::format(" (last refused: {})", last_refusal)),
               0, "the threads may be busy in the dynamic loader or the allocator; retry, or preload the agent");
}

}  // namespace lg
