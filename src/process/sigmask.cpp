// Process::get_sigmask / set_sigmask: a stopped thread's blocked signals (ptrace(2),
// PTRACE_GETSIGMASK and PTRACE_SETSIGMASK, Linux 3.11: `addr` is the size of the kernel's
// sigset_t, 8 bytes on x86-64, and `data` points to it).
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

}  // namespace lg
