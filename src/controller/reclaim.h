// The controller's half of giving back the agent's retired code (docs/consistency.md,
// "Memory"): an RCU-like grace period made of the stops a transition makes anyway. Before it
// stops any thread the controller reads the agent's retired ranges and the number of its latest
// retirement R (status "arena"). Every thread that exists then must be seen, stopped, with its
// pc and every return address of a complete walk outside those ranges; threads born later
// start outside them (nothing references a retired piece). Then `reclaim` up to R is sent. A
// thread seen inside, or whose walk is incomplete (a frame nobody can explain may be retired
// code: arena pages have no CFI), keeps everything for a later round; it never holds the
// transition itself. A controller killed before the end sends nothing: nothing is freed.
#pragma once

#include <sys/types.h>

#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/remote.h"
#include "controller/agent_client.h"
#include "protocol/protocol.h"
#include "unwind/unwinder.h"

namespace lg {

class GraceWatch {
 public:
  GraceWatch() = default;
  // From the status the controller read before it stopped any thread. Inactive when the agent
  // reports no arena or has nothing retired beyond what it gave back.
  static GraceWatch from_status(const protocol::StatusResponse& status);
  bool active() const { return active_; }
  uint64_t upto() const { return upto_; }
  // No reclaim this time (e.g. the program switches stacks: suspended stacks are not seen).
  void give_up() { active_ = false; }

  // The threads that must be seen (every thread known right after the seize). Forgets what was
  // seen before (stop-the-world: each attempt looks at every thread at once).
  void expect(const std::vector<pid_t>& tids);
  // A walk of the stopped thread [tid]. [off_own_stack]: it runs on a stack that is not its own
  // (its own one, suspended, is not seen): counts as inside.
  void observe(pid_t tid, const StackTrace& trace, bool off_own_stack = false);
  void gone(pid_t tid) { expected_.erase(tid); }
  // Whether [trace] may have a frame in a retired range (an incomplete walk may).
  bool maybe_inside(const StackTrace& trace) const;
  // Expected threads not seen yet.
  std::vector<pid_t> unseen() const;
  // Every expected thread was seen outside.
  bool all_clear() const;
  // Why not, for the log ("thread 12 is inside retired code").
  std::string why_not() const;

 private:
  bool active_ = false;
  uint64_t upto_ = 0;
  std::vector<RemoteRange> ranges_;
  std::set<pid_t> expected_, clean_, dirty_;
  bool looked_ = false;  // expect() was called: nobody is "all clear" unseen
};

// Sends `reclaim` up to [watch.upto()] when every expected thread was seen outside. Best effort:
// an agent that does not know the op, or any error, frees nothing. Returns the bytes freed.
uint64_t reclaim_if_clear(AgentClient& agent, const GraceWatch& watch);

}  // namespace lg
