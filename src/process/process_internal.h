// Private to lg_process: the per-thread ptrace state machine shared by process.cpp,
// thread_control.cpp and remote_call.cpp.
#pragma once

#include <signal.h>
#include <sys/ptrace.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <vector>

#include "process/process.h"

namespace lg {

// What we want a thread to be doing; the wait loop drives each thread towards it.
enum class ThreadWant {
  run,   // running freely: stops we see are serviced and the thread resumed
  stop,  // in a ptrace stop that we collected
  call,  // running a remote call: stops are interpreted by remote_call
};

// The kind of ptrace stop a stopped thread is in (ptrace(2), "Stopped states").
enum class StopKind {
  trap,    // PTRACE_EVENT_STOP with SIGTRAP: our PTRACE_INTERRUPT, or a new thread's first stop
  group,   // PTRACE_EVENT_STOP with a stopping signal: the process is group-stopped (SIGSTOP...)
  signal,  // signal-delivery-stop (only at the end of a remote call; the signal is suppressed)
  syscall, // syscall-entry stop at the marker of remote code (PTRACE_O_TRACESYSGOOD)
};

enum class CallOutcome { none, returned, crashed, interrupted };

// What a thread borrowed for remote code gets back (remote_call.cpp).
struct SavedThreadState {
  Registers regs{};
  ExtendedState xstate;            // empty: not saved (a syscall stub leaves it alone)
  std::optional<uint64_t> ssp;     // shadow-stack pointer, when the thread has a shadow stack
  std::optional<uint64_t> sigmask; // blocked signals (PTRACE_GETSIGMASK)
};

struct Process::ThreadInfo {
  pid_t tid = 0;
  // A child process (clone without CLONE_THREAD, not fork/vfork) that PTRACE_O_TRACECLONE
  // attached too: detached at its first stop, never reported as a thread.
  bool foreign = false;
  ThreadWant want = ThreadWant::run;
  bool stopped = false;  // in a ptrace stop we have collected with waitpid
  StopKind kind = StopKind::trap;
  int group_signal = 0;
  // Signals that arrived while we were stopping the thread or while it ran a remote call. We
  // suppressed them; they are raised again (with their siginfo when the kernel allows) right
  // before the thread resumes, so the program still gets them.
  std::vector<siginfo_t> pending_signals;
  // Remote call bookkeeping. A hijacked thread runs with PTRACE_SYSCALL; its syscall-entry
  // stop at call_marker_rip with orig_rax == the marker syscall ends the call (call_result is
  // rdi there).
  uint64_t call_marker_rip = 0;
  uint64_t call_result = 0;
  CallOutcome call_outcome = CallOutcome::none;
  bool call_abort = false;
  int call_signal = 0;
  uint64_t call_fault_pc = 0;
  // The called function was stopped inside a syscall that restarts through the thread's
  // restart_block (-ERESTART_RESTARTBLOCK), overwriting the one the interrupted code may need.
  bool call_clobbered_restart_block = false;
};

// The options every seized thread gets (inherited by auto-attached new threads).
// PTRACE_O_TRACEEXEC: an execve stops the execing thread (under the leader's tid) in a
// PTRACE_EVENT_EXEC stop instead of letting the new program run on unnoticed (Process::departure).
constexpr uint64_t kSeizeOptions = PTRACE_O_TRACECLONE | PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACEEXEC;

constexpr uint64_t kERestartNoIntr = static_cast<uint64_t>(-513);
constexpr uint64_t kERestartRestartBlock = static_cast<uint64_t>(-516);

// ptrace with the argument casts done once.
inline long ptrace_req(enum __ptrace_request req, pid_t tid, uint64_t addr = 0, uint64_t data = 0) {
  return ::ptrace(req, tid, reinterpret_cast<void*>(addr), reinterpret_cast<void*>(data));
}

// Test-only fault injection (tests/unit/process_*): when set, called at named steps ("poll_pass",
// "resume_one", "set_regs", "run_until_marker"); returning true makes that step fail with an io error as if the
// kernel had refused it. Never set outside tests.
using FaultHook = bool (*)(const char* step, pid_t tid);
extern FaultHook g_fault_hook_for_testing;
inline bool injected_fault(const char* step, pid_t tid) {
  return g_fault_hook_for_testing != nullptr && g_fault_hook_for_testing(step, tid);
}

// While a poll loop makes no progress: yields the CPU a few times, then sleeps with a growing
// delay (10 us .. 1 ms).
class PollBackoff {
 public:
  void progressed() {
    delay_us_ = kMin;
    yields_ = 0;
  }
  void idle();

 private:
  static constexpr long kMin = 10, kMax = 1000;
  static constexpr int kYields = 4;
  long delay_us_ = kMin;
  int yields_ = 0;
};

// The thread's scheduler state letter from /proc/PID/task/TID/stat ('R', 'S', 't', 'Z', ...);
// 0 when the thread no longer exists.
char thread_state_letter(pid_t pid, pid_t tid);

}  // namespace lg
