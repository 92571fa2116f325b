// Process::detach_thread: detaching one thread at a time (never every thread stopped at once;
// detach_all uses it too).
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "process/process_internal.h"

namespace lg {

// Signals we suppressed go back in before the detach; a group-stopped thread stays group-stopped
// (the kernel re-arms the group stop on detach).
void Process::reraise_pending(ThreadInfo& t) {
  for (const siginfo_t& info : t.pending_signals) {
    if (info.si_code < 0 && info.si_code != SI_TKILL && ::syscall(SYS_rt_tgsigqueueinfo, pid_, t.tid, info.si_signo, &info) == 0)
      continue;
    ::syscall(SYS_tgkill, pid_, t.tid, info.si_signo);
  }
  t.pending_signals.clear();
}

Result<void> Process::detach_thread(pid_t tid) { return detach_thread_within(tid, std::chrono::milliseconds(5000)); }

Result<void> Process::detach_thread_within(pid_t tid, std::chrono::milliseconds timeout) {
  LG_TRY_VOID(check_tracer_thread());
  if (!find_thread(tid)) return ok_result();
  if (auto s = stop_thread(tid, timeout); !s) {
    if (s.error().kind == ErrorKind::thread_died) return ok_result();
    return s;
  }
  ThreadInfo* t = find_thread(tid);
  if (!t) return ok_result();
  reraise_pending(*t);
  ptrace_req(PTRACE_DETACH, tid, 0, 0);
  threads_.erase(tid);
  if (threads_.empty()) mem_fd_.reset();
  return ok_result();
}

}  // namespace lg
