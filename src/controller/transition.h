// The stop-the-world consistency model (kpatch's): stop every thread, unwind every stack
// reliably, and only if no thread is running — or returns into — an affected range, perform the
// code/slot writes, then resume. Otherwise resume and retry with backoff until the timeout.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/remote.h"
#include "common/result.h"
#include "process/process.h"
#include "unwind/unwinder.h"

namespace lg {

class GraceWatch;  // controller/reclaim.h

struct MemoryWrite {
  RemoteAddr addr;
  std::vector<uint8_t> old_bytes, new_bytes;
};

// A thread that kept the switch from happening: its id, why, and its symbolized stack.
struct Blocker {
  pid_t tid = 0;
  std::string reason;
  std::vector<std::string> stack;
};

// A blocking thread that can never leave the affected function: it is the outermost function of
// the thread's own code (right above start_thread/clone3, or main() above libc's start), so no
// timeout helps. Says which thread and function ("thread 7 never leaves loop: ..."); nullopt when
// no blocker is such a thread. For the hint of a switch that timed out.
std::optional<std::string> never_leaving(const std::vector<Blocker>& blockers);

// The stack rule of both models: why the thread [tid] whose walk is [trace] may not switch —
// its stack cannot be unwound reliably, it ends off the thread's own stack (when [own_stack]:
// off_own_stack, stack_switching.h), or a frame lies in [check] — or nullopt when nothing holds it.
std::optional<std::string> stack_hold(pid_t pid, pid_t tid, uint64_t fs_base, const StackTrace& trace,
                                      const std::vector<RemoteRange>& check, bool own_stack, Unwinder& unwinder);
// The symbolized frames of [trace], and "?? (why)" last when the walk is incomplete.
std::vector<std::string> describe_stack(const StackTrace& trace, Unwinder& unwinder);

struct TransitionOptions {
  std::chrono::milliseconds timeout{10000};
  // Per attempt: how many times the blocking threads alone are let run briefly (the others
  // stay stopped) before the attempt gives up and everyone resumes.
  int nudge_rounds = 10;
  std::function<void(int attempt, const std::vector<Blocker>&)> on_retry;  // progress
  // More blockers found while every thread is stopped: suspended coroutine contexts
  // (src/controller/stack_switching.h). Empty: none.
  std::function<Result<std::vector<Blocker>>()> extra_blockers;
  // No stack switching was detected or declared: a thread whose walk does not end on its own
  // stack is a blocker too (stack_switching.h, off_own_stack).
  bool own_stack = false;
  // The grace period of the agent's retired code (controller/reclaim.h): every attempt shows
  // it the walks of all threads, stopped at once; after a successful run it holds those of the
  // attempt that switched. Null: none.
  GraceWatch* grace = nullptr;
};

struct TransitionStats {
  int attempts = 0;
  size_t threads = 0;
  std::chrono::microseconds stopped{0};   // the stop of the successful attempt
  std::chrono::microseconds total{0};
};

// The error of a failed transition keeps the last blockers for reporting.
struct TransitionFailure {
  Error error;
  std::vector<Blocker> blockers;
};

class StopTheWorld {
 public:
  StopTheWorld(Process& process, Unwinder& unwinder) : process_(process), unwinder_(unwinder) {}

  // Runs the switch. On success every write was verified and performed, in the given order,
  // while all threads were stopped. On failure nothing was written (a write failing half-way is
  // rolled back). The agent orders the writes so that only one changes behaviour (the store of
  // its generation word, docs/consistency.md): a controller killed between two of them (the
  // kernel resumes the threads) leaves every function on one version.
  Result<TransitionStats> run(const std::vector<RemoteRange>& check, const std::vector<MemoryWrite>& writes,
                              const TransitionOptions& options);
  const std::vector<Blocker>& blockers() const { return blockers_; }

 private:
  Result<std::vector<Blocker>> find_blockers(const std::vector<RemoteRange>& check);
  Result<void> perform(const std::vector<MemoryWrite>& writes);
  Result<void> nudge(const std::vector<Blocker>& blockers);

  Process& process_;
  Unwinder& unwinder_;
  std::vector<Blocker> blockers_;
  std::function<Result<std::vector<Blocker>>()> extra_blockers_;
  bool own_stack_ = false;
  GraceWatch* grace_ = nullptr;
};

}  // namespace lg
