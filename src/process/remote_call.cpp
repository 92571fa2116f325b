// Process::remote_call: run a function of the target in one of its threads.
//
// Corner cases (x86-64 SysV ABI and the kernel's signal return path):
//  1. The red zone: the 128 bytes below rsp may hold live data of a leaf function; nothing we
//     push may touch them.
//  2. At a function's entry (rsp + 8) must be 16-byte aligned: we align, then push the return
//     address 0. Returning there faults (SIGSEGV, rip 0), which ptrace reports to us as a
//     signal-delivery-stop: the call is done. rax = 0 says "no vector registers" to variadic
//     callees; DF must be clear at a call.
//  3. Syscall restart (arch/x86/kernel/signal.c, arch_do_signal_or_restart): a thread stopped
//     inside a syscall that must be restarted has orig_rax = the syscall number and rax =
//     -ERESTARTSYS/-ERESTARTNOINTR/-ERESTARTNOHAND/-ERESTART_RESTARTBLOCK; the kernel rewinds
//     rip by 2 and reloads rax when the thread leaves the stop. Our call registers carry
//     orig_rax = -1 so the kernel leaves them alone; the saved registers put back afterwards
//     carry the original orig_rax/rax, so the interrupted syscall restarts as if we had never
//     been there. -ERESTART_RESTARTBLOCK (nanosleep, poll with a timeout) restarts through the
//     thread's restart_block, which the called function overwrites if it is itself stopped
//     inside such a syscall (a timed-out call in sleep(), a signal during its poll()); then
//     the interrupted syscall is re-issued from the start instead (rax = -ERESTARTNOINTR:
//     same registers, so same arguments; a sleep may last longer, but nothing hangs or fails).
//  4. Signals that arrive during the call are suppressed and raised again when the thread
//     resumes; a kernel-raised SIGSEGV/SIGBUS/SIGILL/SIGFPE/SIGTRAP elsewhere (or abort())
//     means the called function crashed: registers are restored and the signal dropped.
//  5. The called function (dlopen: memcpy, strlen) uses SSE/AVX registers, and the thread may
//     have been stopped in the middle of vector code: its extended state (x87, SSE, AVX, MXCSR;
//     PTRACE_GETREGSET NT_X86_XSTATE, see man ptrace and arch/x86/kernel/ptrace.c) is saved
//     before the call and written back with the general registers.
#include <elf.h>
#include <signal.h>
#include <sys/uio.h>
#include <sys/ptrace.h>
#include <sys/user.h>

#include "process/process_internal.h"

namespace lg {

namespace {

using Clock = std::chrono::steady_clock;
constexpr uint64_t kRedZone = 128;
constexpr uint64_t kDirectionFlag = 1u << 10;
constexpr uint64_t kTrapFlag = 1u << 8;

}  // namespace

namespace {

// The x87/SSE/AVX state of a thread (NT_X86_XSTATE), empty when the kernel does not give it.
using ExtendedState = std::vector<uint8_t>;

ExtendedState save_extended_state(pid_t tid) {
  ExtendedState buf(64 * 1024);
  iovec iov{buf.data(), buf.size()};
  if (::ptrace(PTRACE_GETREGSET, tid, reinterpret_cast<void*>(NT_X86_XSTATE), &iov) != 0) return {};
  buf.resize(iov.iov_len);
  return buf;
}

void restore_extended_state(pid_t tid, const ExtendedState& state) {
  if (state.empty()) return;
  ExtendedState copy = state;
  iovec iov{copy.data(), copy.size()};
  (void)::ptrace(PTRACE_SETREGSET, tid, reinterpret_cast<void*>(NT_X86_XSTATE), &iov);
}

}  // namespace

Result<uint64_t> Process::remote_call(pid_t tid, RemoteAddr fn, std::span<const RemoteArg> args,
                                      std::chrono::milliseconds timeout) {
  LG_TRY(ThreadInfo * t, stopped_thread(tid));
  if (args.size() > 6)
    return make_error(ErrorKind::invalid_argument, "remote call with {} arguments: at most 6 are supported", args.size());
  if (fn.is_null()) return make_error(ErrorKind::invalid_argument, "remote call of a null function");

  LG_TRY(const Registers saved, get_regs(tid));
  const ExtendedState saved_ext = save_extended_state(tid);  // 5.
  Registers regs = saved;
  uint64_t sp = saved.rsp - kRedZone;  // 1.
  uint64_t values[6] = {};
  for (size_t i = 0; i < args.size(); ++i) {
    if (!args[i].bytes) {
      values[i] = args[i].value;
      continue;
    }
    const std::string& bytes = *args[i].bytes;
    sp = (sp - bytes.size()) & ~uint64_t{15};
    LG_TRY_VOID(write_memory(RemoteAddr(sp), std::span<const uint8_t>(
                                                 reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size())));
    values[i] = sp;
  }
  sp = (sp & ~uint64_t{15}) - 8;  // 2.
  const uint64_t zero = 0;
  LG_TRY_VOID(write_memory(RemoteAddr(sp), std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(&zero), 8)));

  regs.rsp = sp;
  regs.rip = fn.value;
  regs.rax = 0;
  regs.orig_rax = static_cast<uint64_t>(-1);  // 3.
  regs.eflags &= ~(kDirectionFlag | kTrapFlag);
  regs.rdi = values[0];
  regs.rsi = values[1];
  regs.rdx = values[2];
  regs.rcx = values[3];
  regs.r8 = values[4];
  regs.r9 = values[5];
  LG_TRY_VOID(set_regs(tid, regs));

  // From here on the saved registers go back on every path where the thread still exists.
  t->want = ThreadWant::call;
  t->call_outcome = CallOutcome::none;
  t->call_abort = false;
  t->call_signal = 0;
  t->call_fault_pc = 0;
  t->call_clobbered_restart_block = false;
  if (ptrace_req(PTRACE_CONT, tid, 0, 0) != 0) {
    int err = errno;
    t->want = ThreadWant::stop;
    (void)set_regs(tid, saved);
    return Error(err == ESRCH ? ErrorKind::thread_died : ErrorKind::io,
                 fmt::format("starting a remote call in thread {}: {}", tid, std::strerror(err)), err);
  }
  t->stopped = false;

  const auto deadline = Clock::now() + timeout;
  auto abort_deadline = Clock::time_point::max();
  PollBackoff backoff;
  for (unsigned pass = 1;; ++pass) {
    ThreadInfo* cur = find_thread(tid);
    if (!cur)
      return make_error(ErrorKind::thread_died, "thread {} of process {} exited during a remote call of {}", tid, pid_,
                        fn);
    if (cur->stopped) break;
    auto now = Clock::now();
    if (!cur->call_abort && now >= deadline) {
      cur->call_abort = true;
      ptrace_req(PTRACE_INTERRUPT, tid);
      abort_deadline = now + std::chrono::seconds(2);
    }
    if (now >= abort_deadline)
      return make_error(ErrorKind::timeout,
                        "remote call of {} in thread {} of process {} timed out and the thread did not stop "
                        "again: its registers could not be restored",
                        fn, tid, pid_);
    // Other threads' clone events and signals are serviced now and then: the called function
    // may wait for a lock held by one of them.
    LG_TRY(bool progressed, poll_pass(pass % 16 == 0 ? 0 : tid));
    if (progressed)
      backoff.progressed();
    else
      backoff.idle();
  }

  t = find_thread(tid);
  const CallOutcome outcome = t->call_outcome;
  const int crash_signal = t->call_signal;
  const uint64_t fault_pc = t->call_fault_pc;
  uint64_t result = 0;
  if (outcome == CallOutcome::returned) {
    LG_TRY(Registers after, get_regs(tid));
    result = after.rax;
  }
  t->want = ThreadWant::stop;
  t->call_abort = false;
  Registers restore = saved;
  if (t->call_clobbered_restart_block && saved.rax == kERestartRestartBlock &&
      static_cast<int64_t>(saved.orig_rax) >= 0)
    restore.rax = kERestartNoIntr;  // 3.
  restore_extended_state(tid, saved_ext);
  LG_TRY_VOID(set_regs(tid, restore));
  if (t->kind == StopKind::signal) {
    // Leave the signal-delivery-stop (its signal suppressed) for an ordinary interrupt stop, so
    // the thread is in the same kind of stop as before the call; the stop happens inside the
    // kernel's signal loop, before the restored registers are used.
    ptrace_req(PTRACE_INTERRUPT, tid);
    if (ptrace_req(PTRACE_CONT, tid, 0, 0) == 0) {
      t->stopped = false;
      LG_TRY_VOID(wait_stopped({tid}, std::chrono::seconds(2)));
      if (!find_thread(tid))
        return make_error(ErrorKind::thread_died, "thread {} of process {} exited after a remote call", tid, pid_);
    }
  }

  switch (outcome) {
    case CallOutcome::returned:
      return result;
    case CallOutcome::crashed:
      return Error(ErrorKind::io,
                   fmt::format("remote call of {} in thread {} of process {} crashed with signal {} ({}) at pc {:#x}; "
                               "registers restored, the signal was not delivered",
                               fn, tid, pid_, crash_signal, sigabbrev_np(crash_signal) ? sigabbrev_np(crash_signal) : "?",
                               fault_pc));
    case CallOutcome::interrupted:
    case CallOutcome::none:
      break;
  }
  return Error(ErrorKind::timeout,
               fmt::format("remote call of {} in thread {} of process {} did not return within {} ms; it was "
                           "interrupted and the registers restored (locks it took may still be held)",
                           fn, tid, pid_, timeout.count()));
}

}  // namespace lg
