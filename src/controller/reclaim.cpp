#include "controller/reclaim.h"

#include <algorithm>
#include <cstdlib>

namespace lg {

GraceWatch GraceWatch::from_status(const protocol::StatusResponse& status) {
  GraceWatch w;
  if (!status.arena) return w;
  const auto& a = *status.arena;
  w.upto_ = a.retired_upto;
  w.ranges_ = a.retired_ranges;
  w.active_ = a.retired_upto > a.reclaimed_upto;
  return w;
}

void GraceWatch::expect(const std::vector<pid_t>& tids) {
  expected_ = std::set<pid_t>(tids.begin(), tids.end());
  looked_ = true;
  clean_.clear();
  dirty_.clear();
}

bool GraceWatch::maybe_inside(const StackTrace& trace) const {
  if (!trace.complete) return true;
  for (const auto& f : trace.frames)
    for (const auto& r : ranges_)
      // The pc itself and, for a return address, the call before it: both sides of a border
      // between two pieces count.
      if (r.contains(f.pc) || r.contains(f.lookup_pc)) return true;
  return false;
}

void GraceWatch::observe(pid_t tid, const StackTrace& trace, bool off_own_stack) {
  if (!active_) return;
  // Seen outside once is enough: nothing leads into a retired piece, so a thread seen outside
  // all of them stays outside (a later incomplete walk changes nothing).
  if (clean_.count(tid)) return;
  if (off_own_stack || maybe_inside(trace)) dirty_.insert(tid);
  else {
    clean_.insert(tid);
    dirty_.erase(tid);
  }
}

std::vector<pid_t> GraceWatch::unseen() const {
  std::vector<pid_t> out;
  for (pid_t t : expected_)
    if (!clean_.count(t) && !dirty_.count(t)) out.push_back(t);
  return out;
}

bool GraceWatch::all_clear() const {
  if (!active_ || !looked_) return false;
  return std::all_of(expected_.begin(), expected_.end(), [&](pid_t t) { return clean_.count(t) > 0; });
}

std::string GraceWatch::why_not() const {
  if (!active_) return "nothing to give back";
  for (pid_t t : expected_)
    if (dirty_.count(t) && !clean_.count(t)) return fmt::format("thread {} may be inside retired code", t);
  for (pid_t t : expected_)
    if (!clean_.count(t)) return fmt::format("thread {} was not seen", t);
  return "";
}

uint64_t reclaim_if_clear(AgentClient& agent, const GraceWatch& watch) {
  if (!watch.all_clear()) return 0;
  // For measuring what the arena held before reclaiming existed (docs/performance.md).
  if (const char* no = std::getenv("LIVEGRAFT_TEST_NO_RECLAIM"); no && *no == '1') return 0;
  auto r = agent.call(protocol::ReclaimRequest{watch.upto()});
  return r ? r->freed : 0;
}

}  // namespace lg
