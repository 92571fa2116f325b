#include "controller/transition.h"

#include <algorithm>
#include <thread>

#include "common/hex.h"
#include "common/kill_step.h"
#include "controller/reclaim.h"
#include "controller/stack_switching.h"

namespace lg {

using Clock = std::chrono::steady_clock;

std::optional<std::string> stack_hold(pid_t pid, pid_t tid, uint64_t fs_base, const StackTrace& trace,
                                      const std::vector<RemoteRange>& check, bool own_stack, Unwinder& unwinder) {
  if (!trace.complete) return fmt::format("its stack cannot be unwound reliably: {}", trace.stop_reason);
  if (own_stack)
    if (auto why = off_own_stack(pid, tid, fs_base, trace, unwinder)) return why;
  for (const auto& f : trace.frames) {
    // lookup_pc is the exact pc for the first frame and for a frame a signal interrupted, and
    // pc-1 for a return address (the call instruction, inside the caller).
    auto hit = std::find_if(check.begin(), check.end(), [&](const RemoteRange& r) { return r.contains(f.lookup_pc); });
    if (hit != check.end()) return fmt::format("{} is on its stack", unwinder.symbolize(f.lookup_pc));
  }
  return std::nullopt;
}

std::vector<std::string> describe_stack(const StackTrace& trace, Unwinder& unwinder) {
  std::vector<std::string> lines;
  for (const auto& f : trace.frames) lines.push_back(unwinder.symbolize(f.pc));
  if (!trace.complete) lines.push_back(fmt::format("?? ({})", trace.stop_reason));
  return lines;
}

Result<std::vector<Blocker>> StopTheWorld::find_blockers(const std::vector<RemoteRange>& check) {
  std::vector<Blocker> blockers;
  const bool watching = grace_ && grace_->active();
  if (watching) grace_->expect(process_.threads());
  for (pid_t tid : process_.threads()) {
    auto regs = process_.get_regs(tid);
    if (!regs) {
      if (regs.error().kind == ErrorKind::thread_died) {  // it exited: nothing to check
        if (watching) grace_->gone(tid);
        continue;
      }
      return regs.error();
    }
    LG_TRY(auto trace, unwinder_.unwind(*regs));
    if (watching)
      grace_->observe(tid, trace, !grace_->maybe_inside(trace) && off_own_stack(process_.pid(), tid, regs->fs_base, trace, unwinder_));
    if (auto why = stack_hold(process_.pid(), tid, regs->fs_base, trace, check, own_stack_, unwinder_))
      blockers.push_back({tid, std::move(*why), describe_stack(trace, unwinder_)});
  }
  if (extra_blockers_) {
    LG_TRY(auto more, extra_blockers_());
    blockers.insert(blockers.end(), more.begin(), more.end());
  }
  return blockers;
}

Result<void> StopTheWorld::nudge(const std::vector<Blocker>& blockers) {
  for (const auto& b : blockers) {
    auto r = process_.resume_thread(b.tid);
    if (!r && r.error().kind != ErrorKind::thread_died) return std::move(r).error();
  }
  kill_step("after_nudge");
  std::this_thread::sleep_for(std::chrono::microseconds(200));
  // stop_all stops the nudged threads again, and also any thread they created meanwhile.
  return process_.stop_all(std::chrono::milliseconds(5000));
}

Result<void> StopTheWorld::perform(const std::vector<MemoryWrite>& writes) {
  // Verify every old value first, so that a mismatch writes nothing.
  for (const auto& w : writes) {
    std::vector<uint8_t> cur(w.old_bytes.size());
    LG_TRY_VOID(process_.read_memory(w.addr, cur));
    if (cur != w.old_bytes)
      return make_error(ErrorKind::mismatch, "bytes at {} are {}, expected {}: something else changed this code", w.addr,
                        to_hex(cur), to_hex(w.old_bytes));
  }
  for (size_t i = 0; i < writes.size(); ++i) {
    auto r = process_.write_memory(writes[i].addr, writes[i].new_bytes);
    if (!r) {
      for (size_t j = i; j-- > 0;) (void)process_.write_memory(writes[j].addr, writes[j].old_bytes);
      return std::move(r).error().context("writing code");
    }
    kill_step("after_write");
  }
  return {};
}

namespace {

// "loop+0x1a (prog)" -> "loop".
std::string function_of(const std::string& frame) { return frame.substr(0, frame.find_first_of("+ ")); }

// Where a thread's own code begins: libc's thread trampoline and program start.
bool is_thread_origin(const std::string& function) {
  static const char* const kOrigins[] = {"start_thread", "clone3", "clone", "__clone", "__clone3",
                                         "__libc_start_call_main", "__libc_start_main", "__libc_start_main_impl",
                                         "_start"};
  return std::any_of(std::begin(kOrigins), std::end(kOrigins), [&](const char* o) { return function == o; });
}

}  // namespace

std::optional<std::string> never_leaving(const std::vector<Blocker>& blockers) {
  for (const Blocker& b : blockers) {
    const std::string affected = function_of(b.reason);
    if (affected.empty()) continue;
    // The outermost frame of the affected function, then nothing but the thread's origin.
    auto it = std::find_if(b.stack.rbegin(), b.stack.rend(), [&](const std::string& f) { return function_of(f) == affected; });
    if (it == b.stack.rend() || it == b.stack.rbegin()) continue;
    if (std::all_of(b.stack.rbegin(), it, [](const std::string& f) { return is_thread_origin(function_of(f)); }))
      return fmt::format("thread {} never leaves {}: the thread runs in it for its whole life, so waiting longer does not "
                         "help",
                         b.tid, affected);
  }
  return std::nullopt;
}

Result<TransitionStats> StopTheWorld::run(const std::vector<RemoteRange>& check, const std::vector<MemoryWrite>& writes,
                                          const TransitionOptions& options) {
  TransitionStats stats;
  extra_blockers_ = options.extra_blockers;
  own_stack_ = options.own_stack;
  grace_ = options.grace;
  auto start = Clock::now();
  auto deadline = start + options.timeout;
  auto backoff = std::chrono::milliseconds(1);
  for (;;) {
    ++stats.attempts;
    auto stop_start = Clock::now();
    if (auto stopped = process_.stop_all(std::chrono::milliseconds(5000)); !stopped) {
      (void)process_.resume_all();  // never leave the threads that did stop frozen
      return std::move(stopped).error();
    }
    kill_step("after_stop");
    auto blockers = find_blockers(check);
    // Threads caught inside a short affected function usually leave it within microseconds:
    // let only them run for a moment while every other thread stays stopped, then look again.
    for (int round = 0; round < options.nudge_rounds && blockers && !blockers->empty(); ++round) {
      if (auto n = nudge(*blockers); !n) {
        (void)process_.resume_all();
        return std::move(n).error();
      }
      blockers = find_blockers(check);
    }
    Result<void> done;
    bool switched = false;
    if (blockers && blockers->empty()) {
      done = perform(writes);
      switched = done.ok();
    }
    auto resumed = process_.resume_all();
    kill_step("after_resume");
    auto stop_end = Clock::now();
    // Once the writes are made the switch has happened, whatever fails after it: report success
    // (a thread that could not be resumed is resumed by the detach that follows).
    if (!switched) {
      if (!blockers) return std::move(blockers).error();
      if (!done) return std::move(done).error();
      if (!resumed) return std::move(resumed).error();
    }
    if (switched) {
      stats.threads = process_.threads().size();
      stats.stopped = std::chrono::duration_cast<std::chrono::microseconds>(stop_end - stop_start);
      stats.total = std::chrono::duration_cast<std::chrono::microseconds>(stop_end - start);
      blockers_.clear();
      return stats;
    }
    blockers_ = std::move(*blockers);
    if (Clock::now() + backoff > deadline) {
      std::string who;
      for (const auto& b : blockers_) who += fmt::format("{}{}", who.empty() ? "" : ", ", b.tid);
      return Error(ErrorKind::unsafe,
                   fmt::format("gave up after {} attempts in {} ms: thread{} {} kept an affected function on the stack",
                               stats.attempts, options.timeout.count(), blockers_.size() > 1 ? "s" : "", who),
                   0,
                   [&] {
                     if (auto never = never_leaving(blockers_))
                       return *never + ": apply it with --model per-thread --on-timeout keep, then `livegraft force` "
                                       "switches that thread without a stack check (your call), or move the fix into "
                                       "a function it calls; nothing was changed";
                     return std::string("retry later, or raise --timeout; nothing was changed");
                   }());
    }
    if (options.on_retry) options.on_retry(stats.attempts, blockers_);
    // Wait with the threads running; keep collecting their ptrace events (clone, signals) so
    // that none of them stays stopped by us while we wait.
    for (auto until = Clock::now() + backoff; Clock::now() < until;) {
      if (auto polled = process_.poll_events(); !polled) return std::move(polled).error();
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    backoff = std::min(backoff * 2, std::chrono::milliseconds(100));
  }
}

}  // namespace lg
