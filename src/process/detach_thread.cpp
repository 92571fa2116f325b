// Process::detach_thread: detaching one thread at a time (for the per-thread model, which must
// never stop every thread at once; detach_all stops them all to detach).
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "process/process_internal.h"

namespace lg {

Result<void> Process::detach_thread(pid_t tid) {
  LG_TRY_VOID(check_tracer_thread());
  if (!find_thread(tid)) return ok_result();
  if (auto s = stop_thread(tid, std::chrono::milliseconds(5000)); !s) {
    if (s.error().kind == ErrorKind::thread_died) return ok_result();
    return s;
  }
  ThreadInfo* t = find_thread(tid);
  if (!t) return ok_result();
  for (const siginfo_t& info : t->pending_signals) {
    if (info.si_code < 0 && info.si_code != SI_TKILL && ::syscall(SYS_rt_tgsigqueueinfo, pid_, tid, info.si_signo, &info) == 0)
      continue;
    ::syscall(SYS_tgkill, pid_, tid, info.si_signo);
  }
  t->pending_signals.clear();
  ptrace_req(PTRACE_DETACH, tid, 0, 0);
  threads_.erase(tid);
  if (threads_.empty()) mem_fd_.reset();
  return ok_result();
}

}  // namespace lg
