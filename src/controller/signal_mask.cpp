#include "controller/signal_mask.h"

#include <dirent.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/proc_maps.h"
#include "protocol/protocol.h"
#include "process/process.h"

namespace lg {

namespace {

constexpr int kLooks = 5;

// SIGTRAP blocked by the program. glibc's own block-all (a thread starting or exiting, inside
// pthread_create or fork: glibc code only, no patched function) blocks signals 32 and 33 too
// (SIGCANCEL, SIGSETXID: `SigBlk: fffffffffffbfeff`), which sigprocmask/pthread_sigmask never
// let a program block (HAProxy's workers: `fffffffe7bbbda37`).
bool program_blocks_sigtrap(uint64_t blocked) {
  const uint64_t glibc_internal = (uint64_t{1} << 31) | (uint64_t{1} << 32);
  return (blocked & (uint64_t{1} << (SIGTRAP - 1))) && (blocked & glibc_internal) != glibc_internal;
}

// "SigBlk:" of /proc/PID/task/TID/status, and the thread's name; nullopt when it is gone.
struct ThreadMask {
  pid_t tid = 0;
  std::string name;
  uint64_t blocked = 0;
};

std::optional<ThreadMask> read_thread_mask(pid_t pid, pid_t tid) {
  auto text = read_text_file(fmt::format("/proc/{}/task/{}/status", pid, tid));
  if (!text) return std::nullopt;
  auto blocked = proc_status_field(*text, "SigBlk");
  if (!blocked) return std::nullopt;
  auto name = proc_status_field(*text, "Name");
  return ThreadMask{tid, std::string(name.value_or("")), std::strtoull(std::string(*blocked).c_str(), nullptr, 16)};
}

}  // namespace

std::vector<BlockingThread> threads_blocking_sigtrap(pid_t pid) {
  std::vector<ThreadMask> blocking;
  std::string dir = fmt::format("/proc/{}/task", pid);
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      if (e->d_name[0] == '.') continue;
      auto m = read_thread_mask(pid, static_cast<pid_t>(std::atoi(e->d_name)));
      if (!m) continue;
      if (protocol::is_agent_thread_name(m->name)) continue;  // the agent's threads never run patched code
      if (program_blocks_sigtrap(m->blocked)) blocking.push_back(*m);
    }
    ::closedir(d);
  }
  // A thread counts only when SIGTRAP stays blocked in every one of a few looks 2 ms apart: a
  // program may block everything for a moment itself (e2e.PerThreadLoad.ThreadsCreatedAndExiting...
  // creates threads all the time and was refused before glibc's own block-all was recognized;
  // HAProxy's workers block SIGTRAP for their whole life).
  for (int look = 1; look < kLooks && !blocking.empty(); look++) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    std::erase_if(blocking, [&](const ThreadMask& b) {
      auto m = read_thread_mask(pid, b.tid);
      return !m || !program_blocks_sigtrap(m->blocked);
    });
  }
  std::sort(blocking.begin(), blocking.end(), [](const ThreadMask& a, const ThreadMask& b) { return a.tid < b.tid; });
  std::vector<BlockingThread> out;
  for (const ThreadMask& m : blocking) out.push_back({m.tid, m.name});
  return out;
}

std::string describe_threads(const std::vector<BlockingThread>& threads) {
  std::vector<std::string> names;
  for (size_t i = 0; i < threads.size() && i < 4; i++) names.push_back(fmt::format("{} ({})", threads[i].tid, threads[i].name));
  return fmt::format("{}{}", fmt::join(names, ", "), threads.size() > 4 ? fmt::format(" and {} more", threads.size() - 4) : "");
}

Result<void> SigtrapUnblock::begin(const std::vector<BlockingThread>& threads, std::chrono::milliseconds timeout) {
  constexpr uint64_t trap = uint64_t{1} << (SIGTRAP - 1);
  for (const BlockingThread& b : threads) {
    if (auto stopped = process_.stop_thread(b.tid, timeout); !stopped) {
      if (stopped.error().kind == ErrorKind::thread_died) continue;  // gone: it meets no int3
      restore();
      return std::move(stopped).error();
    }
    auto mask = process_.get_sigmask(b.tid);
    // A breakpoint trap already waiting behind the blocked SIGTRAP (left by a livegraft before
    // the restore below took such traps first) would be delivered wherever the thread is once
    // SIGTRAP is unblocked: no site of the agent's there, the default action, a core dump.
    // (LIVEGRAFT_TEST_KEEP_PENDING_SIGTRAP: tests only, the negative control.)
    Result<bool> stale = mask && (*mask & trap) && !std::getenv("LIVEGRAFT_TEST_KEEP_PENDING_SIGTRAP")
                             ? process_.kernel_sigtrap_pending(b.tid)
                             : Result<bool>(false);
    if (stale && *stale) {
      (void)process_.resume_thread(b.tid);
      restore();
      return Error(ErrorKind::unsafe,
                   fmt::format("thread {} ({}) of process {} blocks SIGTRAP and has a breakpoint trap waiting in its queue (an int3 "
                               "it executed earlier, not delivered yet): unblocking SIGTRAP for the per-thread model's int3s would "
                               "deliver it where the thread is now, and the process would dump core; nothing was changed",
                               b.tid, b.name, process_.pid()),
                   0, "use --model stop-the-world for this process (it writes while every thread is stopped, with no int3)");
    }
    Result<void> set = ok_result();
    if (!mask) set = Result<void>(mask.error());
    else if (!stale) set = Result<void>(stale.error());
    else if (*mask & trap) set = process_.set_sigmask(b.tid, *mask & ~trap);
    if (set && (*mask & trap)) changed_.push_back({b.tid, *mask, *mask & ~trap});
    auto resumed = process_.resume_thread(b.tid);
    if (!set || !resumed) {
      restore();
      return !set ? std::move(set).error() : std::move(resumed).error();
    }
  }
  return ok_result();
}

void SigtrapUnblock::restore() {
  for (const Changed& c : changed_) {
    // A thread that met an int3 of the last code write may still be in the agent's SIGTRAP
    // handler, whose mask (SIGTRAP and the handler's sa_mask added) the kernel replaces by `set`
    // again at its sigreturn: let it leave the handler and look again. A thread whose mask stays
    // other than `set` set one of its own since, and keeps it.
    // (On a loaded machine the thread may wait long for a CPU there: up to about a second.)
    auto wait = std::chrono::milliseconds(0);
    for (int look = 0; look < 25; look++, wait = std::min(wait * 2 + std::chrono::milliseconds(1), std::chrono::milliseconds(64))) {
      std::this_thread::sleep_for(wait);
      if (!process_.stop_thread(c.tid, std::chrono::seconds(2))) break;  // gone, or its stop failed: left unblocked (safe)
      auto now = process_.get_sigmask(c.tid);
      bool settled = !now;  // unreadable: left as it is
      if (now && *now == c.set) {
        // A trap that cannot be taken leaves SIGTRAP unblocked: the safe side.
        settled = true;
        if (take_pending_trap(c.tid)) (void)process_.set_sigmask(c.tid, c.original);
        else
          std::cerr << fmt::format("livegraft: warning: SIGTRAP stays unblocked in thread {} of process {}: a breakpoint trap queued "
                                   "for it could not be taken first (blocked, it would kill the process later)\n",
                                   c.tid, process_.pid());
      }
      (void)process_.resume_thread(c.tid);
      if (settled) break;
    }
  }
  changed_.clear();
}

bool SigtrapUnblock::take_pending_trap(pid_t tid) {
  // The interrupt that stopped the thread may have come as it executed an int3 of the last
  // write: the kernel reports the interrupt stop first, the trap still queued and rip one past
  // the int3 (process.h, kernel_sigtrap_pending). With SIGTRAP blocked again the thread would run
  // on from the middle of the instruction now written there, and the trap, waiting, would kill
  // the process when SIGTRAP is next unblocked (the next transition's begin()): about one
  // transition in 200 on the loaded machine. So the trap is taken first, where the agent's
  // handler would send the thread now that the int3 is gone: back onto the instruction.
  if (std::getenv("LIVEGRAFT_TEST_KEEP_PENDING_SIGTRAP")) return true;  // tests only: the negative control
  for (int i = 0; i < 4; i++) {
    auto pending = process_.kernel_sigtrap_pending(tid);
    if (!pending) return false;
    if (!*pending) return true;
    if (!process_.take_pending_sigtrap(tid, std::chrono::seconds(2))) return false;
  }
  return false;
}

std::vector<pid_t> SigtrapUnblock::threads() const {
  std::vector<pid_t> out;
  for (const Changed& c : changed_) out.push_back(c.tid);
  return out;
}

}  // namespace lg
