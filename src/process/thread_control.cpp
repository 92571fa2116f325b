// Stopping and resuming seized threads: the waitpid state machine.
//
// ptrace(2) corner cases handled here (numbers are referred to below):
//  1. A seized thread reports every stop to waitpid(tid, __WALL): PTRACE_EVENT_STOP
//     (status >> 16) with SIGTRAP after PTRACE_INTERRUPT or as a new thread's first stop, with
//     SIGSTOP/SIGTSTP/SIGTTIN/SIGTTOU for a group-stop; PTRACE_EVENT_CLONE in a thread that
//     created another; a signal-delivery-stop (no event) for every signal it is about to get.
//  2. A thread in a stop stays stopped until we restart it. Clone events and signals therefore
//     stall a "running" thread until we look at it: poll_events() services them.
//  3. A signal-delivery-stop may arrive before the interrupt stop we asked for. We suppress the
//     signal (PTRACE_CONT 0), keep it, and raise it again just before the thread resumes: the
//     signal argument of PTRACE_CONT is ignored in event stops, so injection there is useless.
//  4. A group-stopped thread is resumed with PTRACE_LISTEN, which keeps it stopped (as the
//     process's owner asked with SIGSTOP) while letting it report the SIGCONT later.
//  5. A traced thread's exit is reported as WIFEXITED/WIFSIGNALED for its tid. A multi-threaded
//     leader that exited is reported only when every other thread is gone: a zombie leader
//     never stops, so threads found zombie ('Z' in /proc/PID/task/TID/stat) are dropped.
//  6. A thread running remote code is resumed with PTRACE_SYSCALL, so that the marker syscall
//     at the end of the code stops it (PTRACE_O_TRACESYSGOOD: WSTOPSIG is SIGTRAP | 0x80).
//     Every other syscall-entry/exit stop on the way is passed on.
//  8. execve (ptrace(2), "execve(2) under ptrace"): every other thread is killed and reports
//     its exit (status 0) — the leader's is never reported —, and the execing thread, which
//     takes the leader's tid, reports PTRACE_EVENT_EXEC under that tid (PTRACE_O_TRACEEXEC).
//     Our /proc/PID/mem belongs to the old image and reads 0 bytes from then on. The new
//     program is detached right in its exec stop (note_exec).
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#include <dirent.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>

#include "common/proc_maps.h"
#include "process/process_internal.h"
#include "process/remote_code.h"

namespace lg {

namespace {

using Clock = std::chrono::steady_clock;

bool is_stopping_signal(int sig) { return sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU; }

// A synchronous fault raised by the kernel (not sent by someone), or abort() in the thread.
bool is_crash(const siginfo_t& info, pid_t pid) {
  switch (info.si_signo) {
    case SIGSEGV:
    case SIGBUS:
    case SIGILL:
    case SIGFPE:
    case SIGTRAP:
      return info.si_code > 0;  // SI_KERNEL or a fault code; user-sent signals have si_code <= 0
    case SIGABRT:
      return info.si_code <= 0 && info.si_pid == pid;  // abort() raises SIGABRT at itself
    default:
      return false;
  }
}

// The thread's blocked-signal mask from /proc/PID/task/TID/status (SigBlk), 0 if unreadable.
uint64_t blocked_signals(pid_t pid, pid_t tid) {
  auto text = read_text_file(fmt::format("/proc/{}/task/{}/status", pid, tid));
  if (!text) return 0;
  auto blocked = proc_status_field(*text, "SigBlk");
  return blocked ? std::strtoull(std::string(*blocked).c_str(), nullptr, 16) : 0;
}

// 7. Moves a thread that just executed an int3 (0xcc; or `int $3`, cd 03) back onto it, also
//    when the int3 was rewritten since (the agent's handler does the same: text_poke.cpp).
bool rewind_breakpoint(pid_t tid) {
  Registers regs{};
  if (ptrace_req(PTRACE_GETREGS, tid, 0, reinterpret_cast<uint64_t>(&regs)) != 0 || regs.rip < 2) return false;
  errno = 0;
  long word = ptrace_req(PTRACE_PEEKTEXT, tid, regs.rip - 2, 0);
  if (errno != 0) return false;
  auto b0 = static_cast<uint8_t>(word & 0xff), b1 = static_cast<uint8_t>((word >> 8) & 0xff);
  if (b0 == 0xcd && b1 == 0x03) regs.rip -= 2;
  // The int3 is there, or it was rewritten since it trapped: only text_poke removes an int3 from
  // a running program, and it writes the first byte last, so the instruction now at rip - 1 is
  // whole (the jump, or the original bytes of a reversal). Raising the trap again instead
  // would reach the agent as SI_TKILL, which it must not take for its own, and kill the host.
  else regs.rip -= 1;
  return ptrace_req(PTRACE_SETREGS, tid, 0, reinterpret_cast<uint64_t>(&regs)) == 0;
}

}  // namespace

void Process::note_exit(pid_t tid, int status) {
  if (tid != pid_) return;
  process_exited_ = true;
  if (departure_) return;
  if (WIFEXITED(status)) departure_ = Departure{Departure::How::exited, WEXITSTATUS(status)};
  else if (WIFSIGNALED(status)) departure_ = Departure{Departure::How::killed, WTERMSIG(status)};
}

void Process::note_exec() {  // 8.
  departure_ = Departure{Departure::How::exec, 0};
  process_exited_ = true;
  ptrace_req(PTRACE_DETACH, pid_, 0, 0);  // the new program runs on, untraced
  for (const auto& [tid, t] : threads_) {
    int status = 0;
    if (tid != pid_) (void)::waitpid(tid, &status, WNOHANG | __WALL);  // reap the killed threads
  }
  threads_.clear();
}

std::string Process::departure_text() const {
  if (!departure_) return fmt::format("process {} exited", pid_);
  switch (departure_->how) {
    case Departure::How::exited:
      if (departure_->code < 0) return fmt::format("process {} exited", pid_);
      return fmt::format("process {} exited with status {}", pid_, departure_->code);
    case Departure::How::killed: {
      const char* name = sigabbrev_np(departure_->code);
      return fmt::format("process {} was killed by signal {}{}", pid_, departure_->code,
                         name ? fmt::format(" (SIG{})", name) : std::string());
    }
    case Departure::How::exec:
      return fmt::format("process {} replaced its program (execve)", pid_);
  }
  return fmt::format("process {} exited", pid_);
}

std::optional<Process::Departure> Process::check_departed(std::chrono::milliseconds settle) {
  if (check_tracer_thread().ok()) {
    const auto deadline = Clock::now() + settle;
    PollBackoff backoff;
    for (;;) {
      // Every thread, those in a stop we collected too: a stopped thread that was killed, or the
      // leader's tid taken over by an execing thread, has something new to report.
      bool progressed = false;
      std::vector<pid_t> tids;
      for (const auto& [tid, t] : threads_) tids.push_back(tid);
      for (pid_t tid : tids) {
        ThreadInfo* t = find_thread(tid);
        if (!t || departure_) continue;
        int status = 0;
        pid_t r = ::waitpid(tid, &status, WNOHANG | __WALL);
        if (r == tid) {
          progressed = true;
          if (WIFEXITED(status) || WIFSIGNALED(status) || (WIFSTOPPED(status) && (status >> 16) == PTRACE_EVENT_EXEC)) {
            t->stopped = false;
            handle_status(*t, status);
          } else if (!t->stopped) {
            handle_status(*t, status);
          }
        } else if (r < 0 && errno == ECHILD) {
          threads_.erase(tid);  // the execing thread's old tid
          progressed = true;
          exec_suspected_ = true;
        }
      }
      // A zombie leader dropped earlier (5.) is reported once the other threads are reaped.
      if (!departure_ && !find_thread(pid_)) progressed |= collect_leader();
      if (!departure_) progressed |= reap_unknown_threads();
      if (departure_) break;
      // Our view of the memory reads nothing once the image is gone (an unmapped address in a
      // live image is EIO instead): an exec or an exit is under way.
      uint8_t byte = 0;
      const bool image_gone = mem_fd_.valid() && ::pread(mem_fd_.get(), &byte, 1, 0) == 0;
      if (!image_gone && !process_exited_ && !threads_.empty() && !exec_suspected_ && !progressed) return std::nullopt;
      if (Clock::now() >= deadline) break;
      if (progressed) backoff.progressed();
      else backoff.idle();
    }
  }
  if (!departure_) {
    if (!mem_fd_.valid()) return std::nullopt;  // everything detached: nothing to tell by
    // The kernel said nothing in time: a live thread means a new program, else an exit.
    bool live = false;
    if (DIR* d = ::opendir(fmt::format("/proc/{}/task", pid_).c_str())) {
      while (dirent* e = ::readdir(d))
        if (e->d_name[0] >= '0' && e->d_name[0] <= '9') {
          char st = thread_state_letter(pid_, static_cast<pid_t>(std::atoi(e->d_name)));
          live |= st != 0 && st != 'Z' && st != 'X';
        }
      ::closedir(d);
    }
    uint8_t byte = 0;
    const bool image_gone = ::pread(mem_fd_.get(), &byte, 1, 0) == 0;
    if (live && !image_gone) return std::nullopt;
    departure_ = Departure{live ? Departure::How::exec : Departure::How::exited, -1};
    process_exited_ = true;
  }
  return departure_;
}

void Process::handle_status(ThreadInfo& t, int status) {
  const pid_t tid = t.tid;
  if (WIFEXITED(status) || WIFSIGNALED(status)) {  // 5.
    note_exit(tid, status);
    threads_.erase(tid);
    return;
  }
  if (!WIFSTOPPED(status)) return;
  if ((status >> 16) == PTRACE_EVENT_EXEC && !t.foreign) {  // 8.
    note_exec();
    return;
  }
  if (t.foreign) {
    ptrace_req(PTRACE_DETACH, tid, 0, 0);
    threads_.erase(tid);
    return;
  }
  const int sig = WSTOPSIG(status);
  const int event = status >> 16;
  const bool abort_call = t.want == ThreadWant::call && t.call_abort;
  // Restart a stop we do not keep; re-ask for the interrupt stop if we still want one. A
  // thread running remote code keeps reporting syscalls (6.).
  auto pass_on = [&](int inject) {
    ptrace_req(t.want == ThreadWant::call ? PTRACE_SYSCALL : PTRACE_CONT, tid, 0, static_cast<uint64_t>(inject));
    if (t.want == ThreadWant::stop || abort_call) ptrace_req(PTRACE_INTERRUPT, tid);
  };

  if (event == 0 && sig == (SIGTRAP | 0x80)) {  // a syscall stop (6.)
    if (t.want == ThreadWant::call && !abort_call) {
      Registers regs{};
      if (ptrace_req(PTRACE_GETREGS, tid, 0, reinterpret_cast<uint64_t>(&regs)) == 0 &&
          regs.rip == t.call_marker_rip && regs.orig_rax == static_cast<uint64_t>(remote_code::kMarkerSyscall)) {
        t.stopped = true;
        t.kind = StopKind::syscall;
        t.call_outcome = CallOutcome::returned;
        t.call_result = regs.rdi;
        return;
      }
      if (static_cast<int64_t>(regs.orig_rax) >= 0 && regs.rax == kERestartRestartBlock)
        t.call_clobbered_restart_block = true;
    }
    pass_on(0);
    return;
  }

  if (event == PTRACE_EVENT_CLONE) {
    unsigned long child = 0;
    if (ptrace_req(PTRACE_GETEVENTMSG, tid, 0, reinterpret_cast<uint64_t>(&child)) == 0 && child > 0) {
      ThreadInfo& c = add_thread(static_cast<pid_t>(child), stopping_all_);
      c.foreign = ::access(fmt::format("/proc/{}/task/{}", pid_, child).c_str(), F_OK) != 0;
    }
    // Never keep a thread in its clone event stop: a remote call from there would have its
    // result overwritten by clone's return value, so let clone finish first.
    pass_on(0);
    return;
  }
  if (t.want == ThreadWant::call) {
    Registers regs{};
    if (ptrace_req(PTRACE_GETREGS, tid, 0, reinterpret_cast<uint64_t>(&regs)) == 0 &&
        static_cast<int64_t>(regs.orig_rax) >= 0 && regs.rax == kERestartRestartBlock)
      t.call_clobbered_restart_block = true;
  }
  if (event == PTRACE_EVENT_STOP) {
    const bool group = is_stopping_signal(sig);
    if (t.want == ThreadWant::stop || abort_call) {
      t.stopped = true;
      t.kind = group ? StopKind::group : StopKind::trap;
      t.group_signal = group ? sig : 0;
      if (abort_call) t.call_outcome = CallOutcome::interrupted;
      return;
    }
    if (group && t.want == ThreadWant::run) {
      ptrace_req(PTRACE_LISTEN, tid);  // 4.
      return;
    }
    pass_on(0);  // a new thread's first stop, a SIGCONT notification, a stale interrupt
    return;
  }
  if (event != 0) {  // an event we did not ask for
    pass_on(0);
    return;
  }

  // Signal-delivery-stop.
  siginfo_t info{};
  if (ptrace_req(PTRACE_GETSIGINFO, tid, 0, reinterpret_cast<uint64_t>(&info)) != 0) {
    info = siginfo_t{};
    info.si_signo = sig;
  }
  switch (t.want) {
    case ThreadWant::run:
      ptrace_req(PTRACE_CONT, tid, 0, static_cast<uint64_t>(sig));  // delivered as the kernel meant to
      return;
    case ThreadWant::stop:
      // 7. A breakpoint (int3: SIGTRAP with SI_KERNEL) has already executed: rip is past it.
      //    Raised again with tgkill its siginfo would say SI_TKILL, and a handler that redirects
      //    its own int3 sites (the agent's text_poke, docs/consistency.md) would not recognize it
      //    and the host would die. rip goes back to the int3 instead: it traps again, with the
      //    kernel's siginfo, after the resume.
      if (sig == SIGTRAP && info.si_code == SI_KERNEL && rewind_breakpoint(tid)) {
        pass_on(0);
        return;
      }
      // A fault the kernel raised (si_code > 0) for the instruction at rip recurs when that
      // instruction runs again after the resume; raising it ourselves instead would deliver a
      // user-sent copy without the fault address (JVM- or Go-style SIGSEGV handlers reject it).
      if (!((sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGFPE) && info.si_code > 0))
        t.pending_signals.push_back(info);  // 3.
      pass_on(0);
      return;
    case ThreadWant::call: {
      Registers regs{};
      bool have_regs = ptrace_req(PTRACE_GETREGS, tid, 0, reinterpret_cast<uint64_t>(&regs)) == 0;
      if (is_crash(info, pid_)) {
        t.stopped = true;
        t.kind = StopKind::signal;
        t.call_outcome = CallOutcome::crashed;
        t.call_signal = sig;
        t.call_fault_pc = have_regs ? regs.rip : 0;
        return;
      }
      // Delivered now, where the thread is (remote_call.cpp, 4.): held by us, it would be lost
      // if we died. A stop signal would group-stop the process under our remote code: kept.
      if (is_stopping_signal(sig) || abort_call) {
        t.pending_signals.push_back(info);
        pass_on(0);
      } else {
        pass_on(sig);
      }
      return;
    }
  }
}

Result<bool> Process::poll_pass(pid_t only_tid) {
  if (injected_fault("poll_pass", only_tid)) return make_error(ErrorKind::io, "waitpid: injected fault");
  std::vector<pid_t> tids;
  for (const auto& [tid, t] : threads_) {
    // 0: the threads in a stop we collected too. One killed there (an execve in another
    // thread, a SIGKILL) reports its exit, and must be reaped: an execing thread waits for
    // every other one to be released (8.).
    if (t->stopped && only_tid != 0) continue;
    if (only_tid > 0 && tid != only_tid) continue;
    if (only_tid < 0 && t->want == ThreadWant::run) continue;  // -1: only threads we wait for
    tids.push_back(tid);
  }
  bool progressed = false;
  for (pid_t tid : tids) {
    ThreadInfo* t = find_thread(tid);
    if (!t) continue;
    int status = 0;
    pid_t r = ::waitpid(tid, &status, WNOHANG | __WALL);
    if (r == 0) continue;
    if (r > 0 && t->stopped) {
      // Nothing but an exit, or the leader's tid taken over by an execing thread, comes from a
      // thread in a stop we collected.
      if (WIFEXITED(status) || WIFSIGNALED(status) || (WIFSTOPPED(status) && (status >> 16) == PTRACE_EVENT_EXEC)) {
        handle_status(*t, status);
        progressed = true;
      }
      continue;
    }
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == ECHILD) {  // no longer our tracee (gone through exec, reaped elsewhere)
        threads_.erase(tid);
        progressed = true;
        exec_suspected_ = true;  // 8. the execing thread's old tid vanishes
        continue;
      }
      return make_errno_error(ErrorKind::io, "waitpid for thread {}", tid);
    }
    handle_status(*t, status);
    progressed = true;
  }
  if (exec_suspected_ && !departure_ && !find_thread(pid_)) progressed |= collect_leader();
  return progressed;
}

bool Process::collect_leader() {
  // 8. The exec stop comes under the leader's tid, also after we dropped the (zombie) leader.
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG | __WALL) != pid_) return false;
  if (WIFSTOPPED(status) && (status >> 16) == PTRACE_EVENT_EXEC) note_exec();
  else if (WIFEXITED(status) || WIFSIGNALED(status)) note_exit(pid_, status);
  return true;
}

bool Process::reap_unknown_threads() {
  // A thread whose creation we have not seen yet (its creator's clone event not collected
  // when the creator was killed) is still our tracee: an execing thread waits for it to be
  // reaped (8.), a live one waits in its first stop.
  bool progressed = false;
  DIR* d = ::opendir(fmt::format("/proc/{}/task", pid_).c_str());
  if (!d) return false;
  std::vector<pid_t> unknown;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    pid_t tid = static_cast<pid_t>(std::atoi(e->d_name));
    if (!find_thread(tid)) unknown.push_back(tid);
  }
  ::closedir(d);
  for (pid_t tid : unknown) {
    int status = 0;
    if (::waitpid(tid, &status, WNOHANG | __WALL) != tid) continue;
    progressed = true;
    if (WIFSTOPPED(status)) {
      if ((status >> 16) == PTRACE_EVENT_EXEC) {
        note_exec();
        break;
      }
      handle_status(add_thread(tid, stopping_all_), status);  // adopted: serviced as any other
    } else if (tid == pid_) {
      note_exit(tid, status);
    }
  }
  return progressed;
}

void Process::drop_if_gone(ThreadInfo& t) {
  char st = thread_state_letter(pid_, t.tid);
  if (st == 0 || st == 'Z' || st == 'X') {
    int status = 0;
    // Reap it if the kernel has it for us; a zombie leader is reported only later (5.).
    if (::waitpid(t.tid, &status, WNOHANG | __WALL) == t.tid && (WIFEXITED(status) || WIFSIGNALED(status)))
      note_exit(t.tid, status);
    threads_.erase(t.tid);
  }
}

Result<void> Process::wait_stopped(const std::vector<pid_t>& tids, std::chrono::milliseconds timeout) {
  const auto start = Clock::now();
  const auto deadline = start + timeout;
  auto last_progress = start;
  PollBackoff backoff;
  for (unsigned pass = 0;; ++pass) {
    std::vector<ThreadInfo*> waiting;
    auto consider = [&](ThreadInfo* t) {
      if (t && t->want == ThreadWant::stop && !t->stopped) waiting.push_back(t);
    };
    if (tids.empty()) {
      for (auto& [tid, t] : threads_) consider(t.get());
    } else {
      for (pid_t tid : tids) consider(find_thread(tid));
    }
    if (waiting.empty()) {
      record_stops();
      return ok_result();
    }
    if (threads_.empty() || process_exited_)
      return Error(ErrorKind::thread_died, departure_text());

    auto now = Clock::now();
    if (now - last_progress > std::chrono::milliseconds(50)) {
      for (ThreadInfo* t : waiting) drop_if_gone(*t);  // 5.
      last_progress = now;
      continue;
    }
    if (now >= deadline) {
      std::string which;
      for (size_t i = 0; i < waiting.size() && i < 8; ++i) {
        char st = thread_state_letter(pid_, waiting[i]->tid);
        which += fmt::format("{}{} (state {})", i ? ", " : "", waiting[i]->tid, st ? st : '?');
      }
      if (waiting.size() > 8) which += fmt::format(" and {} more", waiting.size() - 8);
      return make_error(ErrorKind::timeout, "timed out after {} ms waiting for threads of process {} to stop: {}",
                        timeout.count(), pid_, which);
    }
    // Poll the threads we wait for; everyone else now and then (2.). Not on the first pass: a
    // waitpid per thread of a 1000-thread process is most of the cost of stopping one thread.
    LG_TRY(bool progressed, poll_pass(pass % 8 == 7 ? 0 : tids.size() == 1 ? tids.front() : -1));
    if (progressed) {
      backoff.progressed();
      last_progress = Clock::now();
    } else {
      backoff.idle();
    }
  }
}

void Process::record_stops() {
  int live = 0, stopped = 0;
  for (const auto& [tid, t] : threads_) {
    if (t->foreign) continue;
    ++live;
    stopped += t->stopped ? 1 : 0;
  }
  stop_record_.max_stopped = std::max(stop_record_.max_stopped, stopped);
  if (live >= 2 && stopped == live) ++stop_record_.all_stopped;
}

Result<void> Process::stop_all(std::chrono::milliseconds timeout) {
  LG_TRY_VOID(check_tracer_thread());
  if (threads_.empty()) return Error(ErrorKind::thread_died, departure_text());
  stopping_all_ = true;  // threads born meanwhile must end up stopped too
  struct Reset {
    bool& flag;
    ~Reset() { flag = false; }
  } reset{stopping_all_};
  // Interrupt everyone first, then collect: the stops happen in parallel.
  for (auto& [tid, t] : threads_) {
    if (t->stopped) {
      t->want = ThreadWant::stop;
      continue;
    }
    t->want = ThreadWant::stop;
    ptrace_req(PTRACE_INTERRUPT, tid);  // ESRCH: it is exiting; waitpid will tell
  }
  LG_TRY_VOID(wait_stopped({}, timeout));
  if (threads_.empty()) return Error(ErrorKind::thread_died, departure_text());
  return ok_result();
}

Result<void> Process::stop_thread(pid_t tid, std::chrono::milliseconds timeout) {
  LG_TRY_VOID(check_tracer_thread());
  ThreadInfo* t = find_thread(tid);
  if (!t) return make_error(ErrorKind::thread_died, "thread {} of process {} is gone", tid, pid_);
  if (t->stopped) {
    t->want = ThreadWant::stop;
    return ok_result();
  }
  t->want = ThreadWant::stop;
  ptrace_req(PTRACE_INTERRUPT, tid);
  LG_TRY_VOID(wait_stopped({tid}, timeout));
  if (!find_thread(tid)) return make_error(ErrorKind::thread_died, "thread {} of process {} exited", tid, pid_);
  return ok_result();
}

bool Process::is_stopped(pid_t tid) const {
  ThreadInfo* t = find_thread(tid);
  return t && t->stopped;
}

bool Process::leader_replaced() {
  ThreadInfo* t = find_thread(pid_);
  if (!t || !t->stopped || t->foreign) return false;
  // 8. Another thread's execve kills the leader out of a stop we collected, and the execing
  //    thread's exec stop is reported under the same tid: a stopped leader with news is one.
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG | __WALL) != pid_) return false;
  if (WIFSTOPPED(status) && (status >> 16) == PTRACE_EVENT_EXEC) {
    note_exec();
    return true;
  }
  if (WIFEXITED(status) || WIFSIGNALED(status)) {
    note_exit(pid_, status);
    threads_.erase(pid_);
  }
  return false;
}

Result<void> Process::resume_one(ThreadInfo& t) {
  const pid_t tid = t.tid;
  if (injected_fault("resume_one", tid))
    return make_error(ErrorKind::io, "resuming thread {} of process {}: injected fault", tid, pid_);
  // Never PTRACE_CONT a new program out of an exec stop we did not see.
  if (tid == pid_ && leader_replaced()) return Error(ErrorKind::thread_died, departure_text());
  if (!find_thread(tid)) return make_error(ErrorKind::thread_died, "thread {} of process {} exited", tid, pid_);
  // 3. Raise the suppressed signals again. rt_tgsigqueueinfo keeps the siginfo of queued
  // signals (sigqueue, timers); the kernel refuses it for kernel- and kill()-sent ones, which
  // get a plain tgkill.
  uint64_t blocked = t.pending_signals.empty() ? 0 : blocked_signals(pid_, tid);
  uint64_t expected = 0;  // signals that will stop the thread right after it resumes
  for (const siginfo_t& info : t.pending_signals) {
    if (!(info.si_code < 0 && info.si_code != SI_TKILL &&
          ::syscall(SYS_rt_tgsigqueueinfo, pid_, tid, info.si_signo, &info) == 0))
      ::syscall(SYS_tgkill, pid_, tid, info.si_signo);
    if (info.si_signo >= 1 && info.si_signo <= 64 && !(blocked & (1ull << (info.si_signo - 1))))
      expected |= 1ull << (info.si_signo - 1);
  }
  t.pending_signals.clear();
  t.want = ThreadWant::run;
  t.stopped = false;
  const bool group = t.kind == StopKind::group;
  if (ptrace_req(group ? PTRACE_LISTEN : PTRACE_CONT, tid, 0, 0) != 0 && errno != ESRCH)
    return make_errno_error(ErrorKind::io, "resuming thread {} of process {}", tid, pid_);
  if (group || expected == 0) return ok_result();
  // The re-raised, unblocked signals stop the thread before it reaches user space (2.); pass
  // them on now so the thread does not sit in a signal-delivery-stop until the next poll.
  int count = __builtin_popcountll(expected);
  const auto deadline = Clock::now() + std::chrono::seconds(1);
  PollBackoff backoff;
  while (count > 0 && Clock::now() < deadline) {
    ThreadInfo* cur = find_thread(tid);
    if (!cur || cur->stopped) break;
    int status = 0;
    pid_t r = ::waitpid(tid, &status, WNOHANG | __WALL);
    if (r == tid) {
      if (WIFSTOPPED(status) && (status >> 16) == 0) --count;
      handle_status(*cur, status);
      backoff.progressed();
    } else if (r < 0 && errno != EINTR) {
      break;
    } else {
      backoff.idle();
    }
  }
  return ok_result();
}

Result<void> Process::resume_thread(pid_t tid) {
  LG_TRY_VOID(check_tracer_thread());
  ThreadInfo* t = find_thread(tid);
  if (!t) return make_error(ErrorKind::thread_died, "thread {} of process {} is gone", tid, pid_);
  if (!t->stopped) {
    t->want = ThreadWant::run;
    return ok_result();
  }
  return resume_one(*t);
}

Result<void> Process::resume_all() {
  LG_TRY_VOID(check_tracer_thread());
  // Every thread is tried: one that cannot be resumed must not leave the others frozen. The
  // failures are reported together.
  std::vector<Error> failures;
  for (pid_t tid : threads()) {
    ThreadInfo* t = find_thread(tid);
    if (!t) continue;
    if (!t->stopped) {
      t->want = ThreadWant::run;
      continue;
    }
    if (auto r = resume_one(*t); !r) failures.push_back(std::move(r).error());
  }
  auto polled = poll_events();
  if (failures.empty()) return polled;
  Error e = failures.front();
  if (failures.size() > 1) {
    e.message = fmt::format("{} threads of process {} could not be resumed: {}", failures.size(), pid_, e.message);
    for (size_t i = 1; i < failures.size() && i < 8; ++i) e.message += "; " + failures[i].message;
  }
  return e;
}

Result<void> Process::poll_events() {
  LG_TRY_VOID(check_tracer_thread());
  // A few passes: a pass can restart threads that report again right away.
  for (int i = 0; i < 4; ++i) {
    LG_TRY(bool progressed, poll_pass(0));
    if (!progressed) break;
  }
  if (threads_.empty() || process_exited_)
    return Error(ErrorKind::thread_died, departure_text());
  return ok_result();
}

Result<ThreadStopScope> ThreadStopScope::stop(Process& process, pid_t tid, std::chrono::milliseconds timeout) {
  const bool was_stopped = process.is_stopped(tid);
  LG_TRY_VOID(process.stop_thread(tid, timeout));
  return ThreadStopScope(process, tid, !was_stopped);
}

ThreadStopScope::ThreadStopScope(ThreadStopScope&& other) noexcept
    : process_(other.process_), tid_(other.tid_), armed_(other.armed_) {
  other.armed_ = false;
}

ThreadStopScope::~ThreadStopScope() {
  if (!armed_) return;
  if (auto r = resume(); !r && r.error().kind != ErrorKind::thread_died)
    std::fprintf(stderr, "livegraft: %s\n", r.error().describe().c_str());
}

Result<void> ThreadStopScope::resume() {
  if (!armed_) return ok_result();
  armed_ = false;
  return process_->resume_thread(tid_);
}

}  // namespace lg
