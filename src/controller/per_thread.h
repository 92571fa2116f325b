// The controller's side of the per-thread consistency model (docs/consistency.md): it never
// stops more than one thread at a time. For each thread: stop it alone, unwind its stack with
// the reliable unwinder, and if no affected function is on it, write its universe marker
// (fs_base + the agent's marker offset, through /proc/PID/mem) and resume it. Threads that are
// not clean stay pending and are retried with backoff. The agent makes every code change.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <vector>

#include "common/remote.h"
#include "common/result.h"
#include "controller/reclaim.h"
#include "controller/transition.h"
#include "process/process.h"
#include "unwind/unwinder.h"

namespace lg {

inline constexpr uint64_t kNoTransitionMarker = 0x7fffffffffffffffull;  // agent/universe.h

struct SwitchGoal {
  uint64_t id = 0;             // the transition's id: the marker of its target universe
  int32_t marker_offset = 0;   // the marker's %fs offset
  bool to_target = true;       // false after a reversal: threads go back to the initial universe
  std::vector<RemoteRange> affected;  // code a thread may not have on its stack to move
  bool force = false;          // move every thread whatever its stack holds (`livegraft force`)
  // A thread whose own stack is clean may still have suspended coroutine contexts that hold
  // affected code (src/controller/stack_switching.h): their blockers keep it pending.
  std::function<Result<std::vector<Blocker>>(pid_t tid)> context_blockers;
  // An apply whose entry jumps are int3s so far (text_poke step 1; a thread reaching an entry
  // traps to the stub, which dispatches, so threads may switch already): [interiors] are the
  // bytes 1..4 of those jumps. A thread with a frame inside them is not switched, and once
  // every thread that existed when switch_all began has been seen outside them, [open_gate]
  // writes the rest of the jumps (poke_finish). Empty [interiors]: open_gate runs at once.
  std::vector<RemoteRange> interiors;
  std::function<Result<void>()> open_gate;
  // A thread whose walk does not end on its own stack stays pending (off_own_stack).
  bool own_stack = false;
};

// One thread's place in a transition, as `status` reports it.
struct ThreadSurvey {
  pid_t tid = 0;
  bool switched = false;
  std::string reason;              // pending: what holds it
  std::vector<std::string> stack;  // pending: its symbolized stack
};

struct PerThreadStats {
  size_t threads = 0;          // threads seen during the transition
  size_t switched = 0;         // markers written by us
  int rounds = 0;
  int max_stopped = 0;         // most threads of the target in a ptrace stop at once (by us)
  int all_stopped = 0;         // moments with every thread stopped (Process::stop_record): 0
  std::chrono::microseconds longest_stop{0};
  // From the first visit (the entry-jump pass) to the last thread on the goal's side.
  std::chrono::microseconds total{0};
  std::vector<int64_t> stops_us;  // every per-thread stop, for percentiles
  // Where the stops' time went, summed over all stops: PTRACE_INTERRUPT until the stop is
  // collected; registers, unwind and marker; resuming.
  std::chrono::microseconds in_stop{0}, in_inspect{0}, in_resume{0};
};

class PerThreadSwitcher {
 public:
  PerThreadSwitcher(Process& process, Unwinder& unwinder) : process_(process), unwinder_(unwinder) {}

  // Visits every thread once, alone, until none has a frame whose pc lies in [interiors] (the
  // bytes 1..4 of entry jumps about to be written), switching none (the immediate model).
  // Threads born meanwhile cannot be there.
  Result<void> wait_outside(const std::vector<RemoteRange>& interiors, std::chrono::milliseconds timeout);

  // Switches threads until every thread is on the goal's side, or [timeout] passes (error
  // `unsafe` with the pending threads in pending()); opens the goal's gate on the way. One stop
  // per thread: the stop that sees a thread outside the interiors also switches it. [on_round]
  // is called after every round that left threads pending (progress).
  Result<void> switch_all(const SwitchGoal& goal, std::chrono::milliseconds timeout,
                          const std::function<void(size_t switched, const std::vector<Blocker>&)>& on_round);

  // Looks at every thread once, alone, without switching any: which are on the goal's side and
  // what holds the others.
  Result<std::vector<ThreadSurvey>> survey(const SwitchGoal& goal);

  // Every walk of a visit is also shown to [watch] (the grace period of retired code,
  // controller/reclaim.h); see_unseen() visits the threads it still expects to see.
  void watch(GraceWatch* watch) { grace_ = watch; }
  Result<void> see_unseen();

  const std::vector<Blocker>& pending() const { return pending_; }
  PerThreadStats& stats() { return stats_; }
  Unwinder& unwinder() { return unwinder_; }
  // Detaches the threads one at a time (never all stopped together).
  void detach();

 private:
  struct Visit {
    bool gone = false;
    Registers regs{};
    StackTrace trace;
  };
  // Stops [tid] alone, reads its registers and unwinds it, runs [inspect], resumes it.
  Result<Visit> visit(pid_t tid, const std::function<Result<void>(Visit&)>& inspect);
  Result<std::optional<uint64_t>> read_marker(pid_t tid, int32_t offset);
  void note_record();

  std::optional<std::chrono::steady_clock::time_point> began_;

  Process& process_;
  Unwinder& unwinder_;
  std::map<pid_t, uint64_t> fs_base_;  // learned at a thread's first stop; fixed for its life
  std::vector<Blocker> pending_;
  PerThreadStats stats_;
  GraceWatch* grace_ = nullptr;
};

}  // namespace lg
