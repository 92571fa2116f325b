// Process::get_sigmask / set_sigmask: a stopped thread's blocked signals (ptrace(2),
// PTRACE_GETSIGMASK and PTRACE_SETSIGMASK, Linux 3.11: `addr` is the size of the kernel's
// sigset_t, 8 bytes on x86-64, and `data` points to it).
// Process::kernel_sigtrap_pending / take_pending_sigtrap: a breakpoint trap raised for a thread
// and not yet delivered (docs/consistency.md, "Threads that block SIGTRAP"). The kernel's
// get_signal() handles a pending ptrace interrupt (JOBCTL_TRAP_INTERRUPT) before it dequeues
// any signal, synchronous ones included: a thread interrupted just as it executes an int3
// reports the interrupt stop with rip one past the int3 and the SIGTRAP still queued. Resumed
// with SIGTRAP unblocked it takes the trap at once, where it is; resumed with SIGTRAP blocked
// it runs on from the middle of the instruction written over the int3, the trap waiting in its
// queue for the next time SIGTRAP is unblocked (anywhere in the program: not an int3 site).
#include <signal.h>
#include <sys/ptrace.h>

#include <cerrno>

#include "process/process.h"
#include "process/process_internal.h"

namespace lg {

Result<uint64_t> Process::get_sigmask(pid_t tid) const {
  LG_TRY(ThreadInfo * t, stopped_thread(tid));
  uint64_t mask = 0;
  if (ptrace_req(PTRACE_GETSIGMASK, t->tid, sizeof mask, reinterpret_cast<uint64_t>(&mask)) != 0)
    return make_errno_error(ErrorKind::io, "PTRACE_GETSIGMASK of thread {}", tid);
  return mask;
}

Result<void> Process::set_sigmask(pid_t tid, uint64_t mask) {
  LG_TRY(ThreadInfo * t, stopped_thread(tid));
  if (ptrace_req(PTRACE_SETSIGMASK, t->tid, sizeof mask, reinterpret_cast<uint64_t>(&mask)) != 0)
    return make_errno_error(ErrorKind::io, "PTRACE_SETSIGMASK of thread {}", tid);
  return ok_result();
}

Result<bool> Process::kernel_sigtrap_pending(pid_t tid) const {
  LG_TRY(ThreadInfo * t, stopped_thread(tid));
  // PTRACE_PEEKSIGINFO (Linux 3.10) copies queued siginfos without dequeuing them; flags 0 is
  // the thread's private queue (a kernel-raised trap is always queued there).
  struct {
    uint64_t off;
    uint32_t flags;
    int32_t nr;
  } args{0, 0, 16};
  for (;;) {
    siginfo_t infos[16];
    long n = ptrace_req(PTRACE_PEEKSIGINFO, t->tid, reinterpret_cast<uint64_t>(&args), reinterpret_cast<uint64_t>(infos));
    if (n < 0) return make_errno_error(ErrorKind::io, "PTRACE_PEEKSIGINFO of thread {}", tid);
    for (long i = 0; i < n; i++)
      if (infos[i].si_signo == SIGTRAP && infos[i].si_code == SI_KERNEL) return true;
    if (n < args.nr) return false;
    args.off += static_cast<uint64_t>(n);
  }
}

Result<void> Process::take_pending_sigtrap(pid_t tid, std::chrono::milliseconds timeout) {
  LG_TRY(ThreadInfo * t, stopped_thread(tid));
  if (t->kind == StopKind::group)  // PTRACE_LISTEN keeps a group-stopped thread stopped: nothing is dequeued
    return make_error(ErrorKind::unsupported, "thread {} of process {} is group-stopped", tid, pid_);
  // No interrupt is asked: the first thing the kernel does with the thread is dequeue the trap
  // (synchronous signals first) and report it; handle_status (want == stop) puts rip back on the
  // int3 site, suppresses the signal and asks for the interrupt stop that ends the wait.
  t->want = ThreadWant::stop;
  t->stopped = false;
  if (ptrace_req(PTRACE_CONT, tid, 0, 0) != 0 && errno != ESRCH)
    return make_errno_error(ErrorKind::io, "resuming thread {} of process {}", tid, pid_);
  LG_TRY_VOID(wait_stopped({tid}, timeout));
  if (!find_thread(tid)) return make_error(ErrorKind::thread_died, "thread {} of process {} exited", tid, pid_);
  return ok_result();
}

}  // namespace lg
