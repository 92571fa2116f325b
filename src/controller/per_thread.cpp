#include "controller/per_thread.h"

#include <algorithm>
#include <set>
#include <thread>

#include "common/kill_point.h"
#include "controller/stack_switching.h"

namespace lg {

using Clock = std::chrono::steady_clock;
using std::chrono::duration_cast;
using std::chrono::microseconds;
using std::chrono::milliseconds;

namespace {

// Whether a frame of [t] may be inside [interiors]. An incomplete walk may hide a signal frame
// interrupted inside: look again later.
bool maybe_inside(const StackTrace& t, const std::vector<RemoteRange>& interiors) {
  if (!t.complete) return true;
  for (const auto& f : t.frames)
    for (const auto& r : interiors)
      if (r.contains(f.pc)) return true;
  return false;
}

}  // namespace

Result<PerThreadSwitcher::Visit> PerThreadSwitcher::visit(pid_t tid, const std::function<Result<void>(Visit&)>& inspect) {
  Visit v;
  auto start = Clock::now();
  if (!began_) began_ = start;
  if (auto s = process_.stop_thread(tid, milliseconds(5000)); !s) {
    if (s.error().kind == ErrorKind::thread_died) {
      v.gone = true;
      if (grace_) grace_->gone(tid);
      return v;
    }
    return std::move(s).error();
  }
  auto stopped_at = Clock::now();
  Result<void> inspected = ok_result();
  auto regs = process_.get_regs(tid);
  if (!regs) {
    if (regs.error().kind != ErrorKind::thread_died) inspected = std::move(regs).error();
    v.gone = true;
  } else {
    v.regs = *regs;
    fs_base_[tid] = regs->fs_base;
    auto trace = unwinder_.unwind(*regs);
    if (!trace) inspected = std::move(trace).error();
    else {
      v.trace = std::move(*trace);
      if (grace_ && grace_->active())
        grace_->observe(tid, v.trace,
                        !grace_->maybe_inside(v.trace) && off_own_stack(process_.pid(), tid, regs->fs_base, v.trace, unwinder_));
      inspected = inspect(v);
    }
  }
  auto inspected_at = Clock::now();
  auto resumed = process_.resume_thread(tid);
  auto end = Clock::now();
  stats_.in_stop += duration_cast<microseconds>(stopped_at - start);
  stats_.in_inspect += duration_cast<microseconds>(inspected_at - stopped_at);
  stats_.in_resume += duration_cast<microseconds>(end - inspected_at);
  note_record();
  auto us = duration_cast<microseconds>(end - start);
  stats_.stops_us.push_back(us.count());
  stats_.longest_stop = std::max(stats_.longest_stop, us);
  if (!inspected) return std::move(inspected).error();
  if (!resumed && resumed.error().kind != ErrorKind::thread_died) return std::move(resumed).error();
  if (v.gone && grace_) grace_->gone(tid);
  return v;
}

void PerThreadSwitcher::note_record() {
  stats_.max_stopped = std::max(stats_.max_stopped, process_.stop_record().max_stopped);
  stats_.all_stopped = std::max(stats_.all_stopped, process_.stop_record().all_stopped);
}

Result<std::optional<uint64_t>> PerThreadSwitcher::read_marker(pid_t tid, int32_t offset) {
  auto it = fs_base_.find(tid);
  if (it == fs_base_.end()) return std::optional<uint64_t>{};
  auto v = process_.read_value<uint64_t>(RemoteAddr(it->second + static_cast<uint64_t>(static_cast<int64_t>(offset))));
  if (!v) {
    // An exited thread's TLS may be unmapped before its exit is reported (EIO): not known; the
    // caller stops it to look (and learns it is gone, or its fs_base afresh).
    fs_base_.erase(it);
    return std::optional<uint64_t>{};
  }
  return std::optional<uint64_t>(*v);
}

Result<void> PerThreadSwitcher::see_unseen() {
  if (!grace_ || !grace_->active()) return ok_result();
  LG_TRY_VOID(process_.poll_events());
  const auto live = process_.threads();  // sorted
  for (pid_t tid : grace_->unseen()) {
    if (!std::binary_search(live.begin(), live.end(), tid)) {
      grace_->gone(tid);
      continue;
    }
    LG_TRY(auto v, visit(tid, [](Visit&) { return ok_result(); }));
    if (v.gone) grace_->gone(tid);
  }
  return ok_result();
}

Result<void> PerThreadSwitcher::wait_outside(const std::vector<RemoteRange>& interiors, milliseconds timeout) {
  if (interiors.empty()) return ok_result();
  auto deadline = Clock::now() + timeout;
  LG_TRY_VOID(process_.poll_events());
  std::vector<pid_t> todo = process_.threads();
  auto backoff = microseconds(100);
  while (!todo.empty()) {
    std::vector<pid_t> again;
    for (pid_t tid : todo) {
      bool inside = false;
      LG_TRY(auto v, visit(tid, [&](Visit& v) -> Result<void> {
               inside = maybe_inside(v.trace, interiors);
               return ok_result();
             }));
      if (!v.gone && inside) again.push_back(tid);
    }
    todo = std::move(again);
    if (todo.empty()) break;
    if (Clock::now() > deadline)
      return make_error(ErrorKind::unsafe, "thread {} stayed inside the entry of a function being redirected (or its stack could not be unwound)",
                        todo.front());
    for (auto until = Clock::now() + backoff; Clock::now() < until;) {
      LG_TRY_VOID(process_.poll_events());
      std::this_thread::sleep_for(microseconds(50));
    }
    backoff = std::min(backoff * 2, microseconds(100000));
  }
  return ok_result();
}

Result<void> PerThreadSwitcher::switch_all(const SwitchGoal& goal, milliseconds timeout,
                                           const std::function<void(size_t, const std::vector<Blocker>&)>& on_round) {
  const auto start = Clock::now();
  const auto deadline = start + timeout;
  const uint64_t want = goal.to_target ? goal.id : kNoTransitionMarker;
  auto on_side = [&](uint64_t marker) { return (marker == goal.id) == goal.to_target; };
  std::set<pid_t> seen;
  auto backoff = milliseconds(1);
  pending_.clear();
  // The threads still to be seen outside the interiors before the gate opens. Threads born
  // later cannot be inside: their first instruction is the thread's entry, and an entry
  // reached from then on traps.
  std::set<pid_t> unchecked;
  bool gated = static_cast<bool>(goal.open_gate);
  if (gated && goal.interiors.empty()) {
    LG_TRY_VOID(goal.open_gate());
    gated = false;
  } else if (gated) {
    LG_TRY_VOID(process_.poll_events());
    for (pid_t tid : process_.threads()) unchecked.insert(tid);
  }
  for (;;) {
    ++stats_.rounds;
    LG_TRY_VOID(process_.poll_events());
    std::vector<Blocker> pending;
    for (pid_t tid : process_.threads()) {
      seen.insert(tid);
      const bool must_check = gated && unchecked.count(tid);
      // A thread whose marker is already on the goal's side (switched earlier, or born after
      // dispatch went live) needs no stop.
      if (!must_check) {
        LG_TRY(auto known, read_marker(tid, goal.marker_offset));
        if (known && on_side(*known)) continue;
      }
      bool outside = false;
      LG_TRY(auto v, visit(tid, [&](Visit& v) -> Result<void> {
               if (must_check) {
                 if (maybe_inside(v.trace, goal.interiors)) {
                   pending.push_back({tid, v.trace.complete ? "it is inside the entry of a function being redirected"
                                                            : fmt::format("its stack cannot be unwound reliably: {}", v.trace.stop_reason),
                                      describe_stack(v.trace, unwinder_)});
                   return ok_result();
                 }
                 outside = true;
               }
               uint64_t addr = v.regs.fs_base + static_cast<uint64_t>(static_cast<int64_t>(goal.marker_offset));
               LG_TRY(uint64_t marker, process_.read_value<uint64_t>(RemoteAddr(addr)));
               if (on_side(marker)) return ok_result();
               if (goal.force) {
                 LG_TRY_VOID(process_.write_memory(RemoteAddr(addr), {reinterpret_cast<const uint8_t*>(&want), 8}));
                 ++stats_.switched;
                 kill_point("per_thread.thread_switched");
                 return ok_result();
               }
               if (auto why = stack_hold(process_.pid(), tid, v.regs.fs_base, v.trace, goal.affected, goal.own_stack, unwinder_)) {
                 pending.push_back({tid, std::move(*why), describe_stack(v.trace, unwinder_)});
                 return ok_result();
               }
               if (goal.context_blockers) {
                 LG_TRY(auto held, goal.context_blockers(tid));
                 if (!held.empty()) {
                   pending.push_back(std::move(held.front()));
                   return ok_result();
                 }
               }
               // Clean: the thread moves now, while it is stopped; it resumes in its new universe.
               LG_TRY_VOID(process_.write_memory(RemoteAddr(addr), {reinterpret_cast<const uint8_t*>(&want), 8}));
               ++stats_.switched;
               kill_point("per_thread.thread_switched");  // stopped, switched; a dead tracer's exit resumes it
               return ok_result();
             }));
      if (v.gone) fs_base_.erase(tid);
      if (v.gone || outside) unchecked.erase(tid);
    }
    stats_.threads = seen.size();
    if (gated) {
      const auto live = process_.threads();  // sorted
      std::erase_if(unchecked, [&](pid_t tid) { return !std::binary_search(live.begin(), live.end(), tid); });
      if (unchecked.empty()) {
        LG_TRY_VOID(goal.open_gate());
        gated = false;
      }
    }
    if (pending.empty() && !gated) {
      // Every thread we know is on the goal's side. A thread born before dispatch went live has
      // been reported by its parent's clone event by now; one more look catches it.
      LG_TRY_VOID(process_.poll_events());
      bool all = true;
      for (pid_t tid : process_.threads()) {
        LG_TRY(auto m, read_marker(tid, goal.marker_offset));
        if (!m || !on_side(*m)) all = false;
      }
      if (all) {
        stats_.total = duration_cast<microseconds>(Clock::now() - began_.value_or(start));
        pending_.clear();
        return ok_result();
      }
      continue;
    }
    pending_ = std::move(pending);
    if (Clock::now() + backoff > deadline) {
      std::string who;
      for (const auto& b : pending_) who += fmt::format("{}{}", who.empty() ? "" : ", ", b.tid);
      return Error(ErrorKind::unsafe,
                   fmt::format("transition not complete after {} ms: thread{} {} kept an affected function on the stack",
                               timeout.count(), pending_.size() > 1 ? "s" : "", who));
    }
    if (on_round) on_round(stats_.switched, pending_);
    for (auto until = Clock::now() + backoff; Clock::now() < until;) {
      LG_TRY_VOID(process_.poll_events());
      std::this_thread::sleep_for(milliseconds(1));
    }
    backoff = std::min(backoff * 2, milliseconds(50));  // < the safepoint's park (150 ms)
  }
}

Result<std::vector<ThreadSurvey>> PerThreadSwitcher::survey(const SwitchGoal& goal) {
  std::vector<ThreadSurvey> out;
  LG_TRY_VOID(process_.poll_events());
  for (pid_t tid : process_.threads()) {
    ThreadSurvey s{tid};
    LG_TRY(auto v, visit(tid, [&](Visit& v) -> Result<void> {
             uint64_t addr = v.regs.fs_base + static_cast<uint64_t>(static_cast<int64_t>(goal.marker_offset));
             LG_TRY(uint64_t marker, process_.read_value<uint64_t>(RemoteAddr(addr)));
             s.switched = (marker == goal.id) == goal.to_target;
             if (s.switched) return ok_result();
             s.stack = describe_stack(v.trace, unwinder_);
             s.reason = stack_hold(process_.pid(), tid, v.regs.fs_base, v.trace, goal.affected, goal.own_stack, unwinder_)
                            .value_or("not switched yet (its stack is clean: the next round switches it)");
             return ok_result();
           }));
    if (!v.gone) out.push_back(std::move(s));
  }
  return out;
}

void PerThreadSwitcher::detach() {
  process_.detach_all();  // thread by thread: never all stopped
  note_record();
}

}  // namespace lg
