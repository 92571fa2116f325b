// Process: seizing a target, registers and memory, detaching. The stop/resume state machine is
// in thread_control.cpp, remote calls in remote_call.cpp.
#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/prctl.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <set>
#include <sstream>

#include "common/proc_maps.h"
#include "process/process_internal.h"

namespace lg {

namespace {

struct ProcStatus {
  char state = 0;
  pid_t tracer = 0;
  pid_t tgid = 0;
  uid_t real_uid = 0, effective_uid = 0;
};

// Parses the fields we need from /proc/PID/status (or /proc/PID/task/TID/status).
Result<ProcStatus> read_status(const std::string& path) {
  LG_TRY(std::string text, read_text_file(path));
  ProcStatus st;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("State:", 0) == 0) {
      auto pos = line.find_first_not_of(" \t", 6);
      if (pos != std::string::npos) st.state = line[pos];
    } else if (line.rfind("TracerPid:", 0) == 0) {
      st.tracer = static_cast<pid_t>(std::atoi(line.c_str() + 10));
    } else if (line.rfind("Tgid:", 0) == 0) {
      st.tgid = static_cast<pid_t>(std::atoi(line.c_str() + 5));
    } else if (line.rfind("Uid:", 0) == 0) {
      unsigned r = 0, e = 0;
      if (std::sscanf(line.c_str() + 4, "%u %u", &r, &e) == 2) {
        st.real_uid = r;
        st.effective_uid = e;
      }
    }
  }
  return st;
}

// The tids in /proc/PID/task, or an error when the process is gone.
Result<std::vector<pid_t>> list_tasks(pid_t pid) {
  std::string path = fmt::format("/proc/{}/task", pid);
  DIR* dir = ::opendir(path.c_str());
  if (!dir) {
    if (errno == ENOENT) return make_error(ErrorKind::thread_died, "process {} exited", pid);
    return make_errno_error(ErrorKind::io, "cannot list {}", path);
  }
  std::vector<pid_t> tids;
  while (dirent* e = ::readdir(dir)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    tids.push_back(static_cast<pid_t>(std::atoi(e->d_name)));
  }
  ::closedir(dir);
  std::sort(tids.begin(), tids.end());
  return tids;
}

int read_ptrace_scope() {
  auto text = read_text_file("/proc/sys/kernel/yama/ptrace_scope");
  if (!text) return 0;
  return std::atoi(text->c_str());
}

pid_t our_tid() { return static_cast<pid_t>(::syscall(SYS_gettid)); }

Error busy_error(pid_t pid, pid_t tracer) {
  std::string who;
  if (auto comm = read_text_file(fmt::format("/proc/{}/comm", tracer))) {
    who = *comm;
    while (!who.empty() && who.back() == '\n') who.pop_back();
  }
  if (tracer == our_tid() || tracer == ::getpid())
    return Error(ErrorKind::busy, fmt::format("process {} is already traced by this process (PID {})", pid, tracer));
  return Error(ErrorKind::busy,
               fmt::format("process {} is already traced by PID {} ({})", pid, tracer,
                           who.empty() ? "gdb? strace?" : who),
               0, "detach the other tracer first: only one tracer may hold a process");
}

Error permission_error(pid_t pid, const ProcStatus& st, int err) {
  std::string msg = fmt::format("not allowed to ptrace process {} (owned by uid {}, we run as euid {})", pid,
                                st.real_uid, ::geteuid());
  std::string hint;
  int scope = read_ptrace_scope();
  if (scope > 0) {
    msg += fmt::format("; /proc/sys/kernel/yama/ptrace_scope is {}", scope);
    hint = scope >= 3 ? "ptrace_scope 3 forbids all attaching until reboot"
                      : "run as root, or set /proc/sys/kernel/yama/ptrace_scope to 0 (sysctl kernel.yama.ptrace_scope=0)";
  } else if (st.real_uid != ::geteuid() && ::geteuid() != 0) {
    hint = "run as the process's owner or as root";
  } else {
    hint = "the process may be non-dumpable (setuid, PR_SET_DUMPABLE 0) or protected by an LSM; run as root";
  }
  return Error(ErrorKind::permission, std::move(msg), err, std::move(hint));
}

}  // namespace

FaultHook g_fault_hook_for_testing = nullptr;

void PollBackoff::idle() {
  // A thread asked to stop usually gets there within microseconds once it runs: yield the CPU
  // to it a few times before sleeping (a sleep costs the timer slack, 50 us by default, plus a
  // wake-up on a loaded machine; per-thread stops are mostly that wait).
  if (yields_ < kYields) {
    ++yields_;
    ::sched_yield();
    return;
  }
  timespec ts{0, delay_us_ * 1000};
  ::nanosleep(&ts, nullptr);
  delay_us_ = std::min(delay_us_ * 2, kMax);
}

char thread_state_letter(pid_t pid, pid_t tid) {
  auto text = read_text_file(fmt::format("/proc/{}/task/{}/stat", pid, tid));
  if (!text) return 0;
  // "tid (comm) S ...": comm may contain spaces and parentheses, so look after the last ')'.
  auto close = text->rfind(')');
  if (close == std::string::npos || close + 2 >= text->size()) return 0;
  return (*text)[close + 2];
}

Process::Process(pid_t pid) : pid_(pid), tracer_tid_(our_tid()) {
  // The tracer thread's short sleeps (PollBackoff) should last what they ask for, not the
  // default 50 us slack more.
  (void)::prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
}

Process::~Process() { detach_all(); }

Result<std::unique_ptr<Process>> Process::seize(pid_t pid) {
  if (pid <= 0) return make_error(ErrorKind::invalid_argument, "invalid process id {}", pid);
  auto status = read_status(fmt::format("/proc/{}/status", pid));
  if (!status) {
    if (status.error().err == ENOENT || status.error().err == ESRCH)
      return Error(ErrorKind::not_found, fmt::format("no process with PID {}", pid));
    return std::move(status).error();
  }
  if (pid == ::getpid()) return make_error(ErrorKind::invalid_argument, "livegraft cannot seize its own process");
  if (status->state == 'Z' || status->state == 'X') {
    // A zombie leader with live threads (main called pthread_exit) is a live process.
    bool live_threads = false;
    if (auto tids = list_tasks(pid))
      for (pid_t tid : *tids) {
        char st = thread_state_letter(pid, tid);
        live_threads |= st != 0 && st != 'Z' && st != 'X';
      }
    if (!live_threads)
      return Error(ErrorKind::not_found,
                   fmt::format("process {} has exited (a zombie not yet reaped by its parent)", pid));
  }
  // /proc/PID/status also answers for a thread id that is not a process: refuse those.
  if (status->tgid != 0 && status->tgid != pid)
    return make_error(ErrorKind::invalid_argument, "{} is a thread of process {}, not a process", pid, status->tgid);
  if (status->tracer != 0) return busy_error(pid, status->tracer);

  std::unique_ptr<Process> process(new Process(pid));
  // On any error below, the destructor detaches what we seized.
  std::set<pid_t> seen;
  // 1. Threads appear while we list (a not-yet-seized thread may clone), so list again until a
  //    pass finds nothing new: then every thread existing at that listing was seized before it,
  //    and any later thread was created by a seized one and is auto-attached (TRACECLONE).
  for (;;) {
    auto tids = list_tasks(pid);
    if (!tids) {
      if (tids.error().kind == ErrorKind::thread_died)
        return Error(ErrorKind::not_found, fmt::format("process {} exited while being seized", pid));
      return std::move(tids).error();
    }
    bool found_new = false;
    for (pid_t tid : *tids) {
      if (!seen.insert(tid).second) continue;
      found_new = true;
      if (ptrace_req(PTRACE_SEIZE, tid, 0, kSeizeOptions) == 0) {
        process->add_thread(tid, false);
        continue;
      }
      int err = errno;
      if (err == ESRCH) continue;  // exited between the listing and the seize
      if (char st = thread_state_letter(pid, tid); st == 0 || st == 'Z' || st == 'X') continue;  // exited
      if (err == EPERM) {
        // 2. EPERM also means "already traced": by us when a seized thread created it (it is
        //    auto-attached), by someone else otherwise.
        auto tst = read_status(fmt::format("/proc/{}/task/{}/status", pid, tid));
        if (!tst) continue;  // gone
        if (tst->tracer == process->tracer_tid_) {
          process->add_thread(tid, false);
          continue;
        }
        if (tst->tracer != 0) return busy_error(pid, tst->tracer);
        return permission_error(pid, *status, err);
      }
      return Error(ErrorKind::io, fmt::format("PTRACE_SEIZE of thread {} of process {}: {}", tid, pid,
                                              std::strerror(err)), err);
    }
    if (!found_new) break;
  }
  if (process->threads_.empty())
    return Error(ErrorKind::not_found, fmt::format("process {} exited while being seized", pid));

  // The memory of the whole process, through any live thread: a zombie leader (main called
  // pthread_exit) has no mm, its /proc/PID/mem fails with ESRCH. The fd keeps the mm, not the
  // thread, so it stays good when that thread exits.
  for (const auto& [tid, t] : process->threads_) {
    process->mem_fd_ = UniqueFd(::open(fmt::format("/proc/{}/task/{}/mem", pid, tid).c_str(), O_RDWR | O_CLOEXEC));
    if (process->mem_fd_.valid()) break;
  }
  if (!process->mem_fd_.valid()) return make_errno_error(ErrorKind::io, "cannot open /proc/{}/mem", pid);
  // Threads auto-attached during the seize sit in their first stop, their creators in a clone
  // event stop: let them go.
  LG_TRY_VOID(process->poll_events());
  return process;
}

std::vector<pid_t> Process::threads() const {
  std::vector<pid_t> out;
  out.reserve(threads_.size());
  for (const auto& [tid, t] : threads_)
    if (!t->foreign) out.push_back(tid);
  return out;
}

Result<void> Process::check_tracer_thread() const {
  pid_t me = our_tid();
  if (me != tracer_tid_)
    return make_error(ErrorKind::internal,
                      "process {} was seized by thread {} but is used from thread {} (ptrace is per tracer thread)",
                      pid_, tracer_tid_, me);
  return ok_result();
}

Process::ThreadInfo* Process::find_thread(pid_t tid) const {
  auto it = threads_.find(tid);
  return it == threads_.end() ? nullptr : it->second.get();
}

Process::ThreadInfo& Process::add_thread(pid_t tid, bool stop_wanted) {
  auto& slot = threads_[tid];
  if (!slot) {
    slot = std::make_unique<ThreadInfo>();
    slot->tid = tid;
    slot->want = stop_wanted ? ThreadWant::stop : ThreadWant::run;
  }
  return *slot;
}

Result<Process::ThreadInfo*> Process::stopped_thread(pid_t tid) const {
  LG_TRY_VOID(check_tracer_thread());
  ThreadInfo* t = find_thread(tid);
  if (!t) return make_error(ErrorKind::thread_died, "thread {} of process {} is not known (exited?)", tid, pid_);
  if (!t->stopped) return make_error(ErrorKind::internal, "thread {} of process {} is not stopped", tid, pid_);
  return t;
}

Result<Registers> Process::get_regs(pid_t tid) const {
  LG_TRY(ThreadInfo * t, stopped_thread(tid));
  Registers regs{};
  if (ptrace_req(PTRACE_GETREGS, t->tid, 0, reinterpret_cast<uint64_t>(&regs)) != 0)
    return make_errno_error(ErrorKind::io, "PTRACE_GETREGS of thread {}", tid);
  return regs;
}

Result<void> Process::set_regs(pid_t tid, const Registers& regs) {
  if (tid == pid_ && leader_replaced()) return Error(ErrorKind::thread_died, departure_text());
  LG_TRY(ThreadInfo * t, stopped_thread(tid));
  if (injected_fault("set_regs", tid)) return make_error(ErrorKind::io, "PTRACE_SETREGS of thread {}: injected fault", tid);
  if (ptrace_req(PTRACE_SETREGS, t->tid, 0, reinterpret_cast<uint64_t>(&regs)) != 0)
    return make_errno_error(ErrorKind::io, "PTRACE_SETREGS of thread {}", tid);
  return ok_result();
}

std::string Process::gone_memory_text() const {
  if (departure_) return departure_text();
  return "its memory is gone (it exited or replaced its program with execve)";
}

Result<void> Process::read_memory(RemoteAddr addr, std::span<uint8_t> out) const {
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::pread(mem_fd_.get(), out.data() + done, out.size() - done, static_cast<off_t>(addr.value + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return make_errno_error(ErrorKind::io, "reading {} bytes at {} in process {}", out.size() - done,
                              addr + static_cast<int64_t>(done), pid_);
    }
    if (n == 0)
      // 0 bytes, not EIO: the image this fd belongs to is gone (thread_control.cpp, 8.).
      return make_error(ErrorKind::thread_died, "reading {} bytes at {} in process {}: {}",
                        out.size() - done, addr + static_cast<int64_t>(done), pid_, gone_memory_text());
    done += static_cast<size_t>(n);
  }
  return ok_result();
}

Result<void> Process::write_memory(RemoteAddr addr, std::span<const uint8_t> bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n =
        ::pwrite(mem_fd_.get(), bytes.data() + done, bytes.size() - done, static_cast<off_t>(addr.value + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return make_errno_error(ErrorKind::io, "writing {} bytes at {} in process {}", bytes.size() - done,
                              addr + static_cast<int64_t>(done), pid_);
    }
    if (n == 0)
      // 0 bytes, not EIO: the image this fd belongs to is gone (thread_control.cpp, 8.).
      return make_error(ErrorKind::thread_died, "writing {} bytes at {} in process {}: {}",
                        bytes.size() - done, addr + static_cast<int64_t>(done), pid_, gone_memory_text());
    done += static_cast<size_t>(n);
  }
  return ok_result();
}

void Process::detach_all() {
  if (threads_.empty()) return;
  if (!check_tracer_thread()) {
    std::fprintf(stderr, "livegraft: cannot detach process %d from thread %d (seized by thread %d)\n", pid_, our_tid(),
                 tracer_tid_);
    return;
  }
  if (detach_together_) {
    // PTRACE_DETACH needs a stopped tracee; stopping everyone also collects the stops (clone
    // events, signals) that would otherwise be lost with the detach.
    (void)stop_all(std::chrono::milliseconds(5000));
    for (auto& [tid, t] : threads_) {
      if (!t->stopped) {
        std::fprintf(stderr, "livegraft: thread %d of process %d did not stop; left traced\n", tid, pid_);
        continue;
      }
      reraise_pending(*t);
      ptrace_req(PTRACE_DETACH, tid, 0, 0);
    }
    threads_.clear();
    mem_fd_.reset();
    return;
  }
  // Thread by thread (detach_thread.cpp): stopping everyone first would be a moment with the
  // whole process stopped, which the per-thread model and injection promise never to cause.
  // Threads born meanwhile (a thread still traced may clone) are added by its clone event and
  // detached in a later turn of the loop.
  // 5 s without progress: one-by-one stops of many busy threads on few cores each wait for the
  // thread to be scheduled, so the bound is per thread, renewed by every detach that succeeds.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(5000);
  std::set<pid_t> left_traced;
  while (!threads_.empty() && !process_exited_) {
    pid_t tid = 0;
    for (const auto& [id, t] : threads_)
      if (!left_traced.count(id)) {
        tid = id;
        break;
      }
    if (tid == 0) break;
    auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (auto r = detach_thread_within(tid, std::max(remaining, std::chrono::milliseconds(1))); !r) {
      std::fprintf(stderr, "livegraft: thread %d of process %d did not stop; left traced\n", tid, pid_);
      left_traced.insert(tid);
    } else {
      deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(5000);
      if (find_thread(tid)) left_traced.insert(tid);  // reported gone but not reaped yet: the kernel detaches it
    }
  }
  threads_.clear();
  mem_fd_.reset();
}

}  // namespace lg
