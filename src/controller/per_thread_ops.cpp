#include "controller/per_thread_ops.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <iostream>

#include "common/fd.h"
#include "common/hex.h"
#include "common/kill_point.h"
#include "common/scope_guard.h"
#include "controller/per_thread.h"
#include "controller/reclaim.h"
#include "controller/signal_mask.h"
#include "controller/stack_switching.h"
#include "x86/prologue.h"

namespace lg {

namespace {

using std::chrono::milliseconds;

void say(const OperationOptions& o, const std::string& line) {
  if (o.progress) o.progress(line);
}

Result<std::vector<uint8_t>> read_code(pid_t pid, RemoteAddr at, size_t n) {
  UniqueFd fd(::open(fmt::format("/proc/{}/mem", pid).c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return make_errno_error(ErrorKind::io, "open /proc/{}/mem", pid);
  std::vector<uint8_t> out(n);
  ssize_t got = ::pread(fd.get(), out.data(), n, static_cast<off_t>(at.value));
  if (got <= 0) return make_errno_error(ErrorKind::io, "reading {} bytes at {} of process {}", n, at, pid);
  out.resize(static_cast<size_t>(got));
  return out;
}

}  // namespace

Error departure_error(Process& process, Error error, const std::string& during) {
  if (!process.check_departed()) return error;
  const pid_t pid = process.pid();
  if (process.departure()->how == Process::Departure::How::exec)
    return Error(ErrorKind::thread_died,
                 fmt::format("{} during {}: the patch is no longer in it (the new program started without it and without "
                             "the agent)",
                             process.departure_text(), during),
                 0, fmt::format("`livegraft status {}` shows the new program; apply the patch again if it needs it", pid));
  return Error(ErrorKind::thread_died, fmt::format("{} during {}", process.departure_text(), during), 0,
               "nothing is left to undo: the process is gone");
}

Result<std::unique_ptr<Unwinder>> unwinder_for(pid_t pid, const std::vector<protocol::PatchInfo>& patches) {
  LG_TRY(auto unwinder, Unwinder::create(pid));
  unwinder->load_all_cfi();  // before any thread is stopped
  register_coroutine_stack_ends(pid, *unwinder);  // stack_switching.h
  for (const auto& p : patches) {
    RemoteAddr eh(p.eh_frame ? p.eh_frame->addr : 0);
    uint64_t eh_size = p.eh_frame ? p.eh_frame->size : 0;
    for (const auto& r : p.code) unwinder->add_code_region(r, eh, eh_size, p.name);
    // The replacements by the names of the functions they replace (a blocker "inside the patch"
    // is named like one in the original: "outer+0x1d (patch fix)").
    for (const auto& f : p.funcs)
      if (f.new_size)
        unwinder->add_code_symbol(RemoteRange{RemoteAddr(f.new_addr), RemoteAddr(f.new_addr + f.new_size)},
                                  f.old_name);
  }
  return unwinder;
}

namespace {

int64_t percentile(std::vector<int64_t> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))];
}

nlohmann::json stats_json(const PerThreadStats& s) {
  return {{"model", "per-thread"},
          {"threads", s.threads},
          {"switched", s.switched},
          {"rounds", s.rounds},
          {"max_stopped_threads", s.max_stopped},
          {"all_stopped_moments", s.all_stopped},
          {"thread_stops", s.stops_us.size()},
          {"stop_p50_us", percentile(s.stops_us, 0.5)},
          {"stop_p99_us", percentile(s.stops_us, 0.99)},
          {"stops_us", s.stops_us},  // every stop, in the order made: pooled across transitions by bench/
          {"longest_stop_us", s.longest_stop.count()},
          {"total_us", s.total.count()},
          {"stop_parts_us", {{"interrupt_wait", s.in_stop.count()}, {"inspect", s.in_inspect.count()}, {"resume", s.in_resume.count()}}}};
}

struct PtInfo {
  uint64_t id = 0;
  int32_t marker_offset = 0;
  bool reversed = false;
  std::vector<RemoteRange> interiors, check, check_target;
  bool poking = false;  // the entry jumps are int3s so far: going forward opens the gate first
};

Result<PtInfo> pt_info(const protocol::Plan& plan) {
  if (!plan.per_thread)
    return make_error(ErrorKind::agent, "the agent does not support the per-thread model (no 'per_thread' in its reply); use --model stop-the-world");
  const auto& p = *plan.per_thread;
  return PtInfo{p.id, p.marker_offset, false, p.interiors, plan.check, p.check_target};
}

// From a per-thread transition in progress (status "transition").
PtInfo pt_info_from_status(const protocol::PerThreadTransition& t) {
  return PtInfo{t.id, t.marker_offset, t.reversed, t.interiors, t.check, t.check_target, t.phase == protocol::Phase::poking};
}

// The per-thread transition in a state a controller can drive, or nullptr: switching, or
// poking with threads switched early (the agent undoes one abandoned before that; a live
// controller in that phase holds the process, and seizing it fails).
const protocol::PerThreadTransition* drivable(const protocol::StatusResponse& status) {
  const auto& t = status.transition;
  if (!t || t->model != protocol::Model::per_thread || !t->per_thread || t->per_thread->phase == protocol::Phase::prepared)
    return nullptr;
  return &*t->per_thread;
}

SwitchGoal goal_of(const PtInfo& info, const std::vector<RemoteRange>& extra_check, bool force) {
  SwitchGoal goal{info.id, info.marker_offset, !info.reversed, info.reversed ? info.check_target : info.check, force};
  if (!info.reversed) goal.affected.insert(goal.affected.end(), extra_check.begin(), extra_check.end());
  return goal;
}

// The grace period of the agent's retired code (controller/reclaim.h): every thread known
// right after the seize must be seen outside it; [status] was read before the seize.
GraceWatch grace_for(const protocol::StatusResponse& status, Process& process, const OperationOptions& options) {
  GraceWatch g = GraceWatch::from_status(status);
  // Suspended stacks of a program that switches stacks are not all seen: keep everything.
  if (options.context_check || options.allow_stack_switching) g.give_up();
  g.expect(process.threads());
  return g;
}

// After the transition completed: the expected threads no visit saw (on the goal's side
// already) are visited once, then the agent gives back what they are all outside of.
void reclaim_after(PerThreadSwitcher& sw, AgentClient& agent, GraceWatch& grace) {
  if (!grace.active() || !sw.see_unseen()) return;
  (void)reclaim_if_clear(agent, grace);
}

// Drives the transition towards its current goal (the target universe, or back to the initial
// one when [info.reversed]) and completes it. When --timeout passes: reverse it and finish the
// reversal (the process ends as it was before this transition), or keep it in progress. Going
// forward from the poking phase, the entry jumps are written (poke_finish) once every thread
// was seen outside them.
Result<void> drive(PerThreadSwitcher& sw, AgentClient& agent, const std::string& name, PtInfo& info,
                   const std::vector<RemoteRange>& extra_check, const OperationOptions& options, bool force) {
  // A line when what holds the transition changes, else one every 5 s (the rounds come every
  // 50 ms at most: a line per few rounds repeated itself).
  std::string last;
  auto last_said = std::chrono::steady_clock::time_point{};
  auto progress = [&](size_t switched, const std::vector<Blocker>& pending) {
    std::string held = fmt::format("{} pending (thread {}: {})", pending.size(), pending.front().tid, pending.front().reason);
    auto now = std::chrono::steady_clock::now();
    if (held == last && now - last_said < std::chrono::seconds(5)) return;
    last = held;
    last_said = now;
    say(options, fmt::format("waiting: {} thread(s) switched, {}", switched, held));
  };
  // Declared coroutine contexts suspended by a thread keep it pending too (stack_switching.h).
  auto with_contexts = [&](SwitchGoal g) {
    g.own_stack = !g.force && checks_own_stacks(options);
    if (options.context_check && !g.force)
      g.context_blockers = [&options, &sw, affected = g.affected](pid_t tid) { return options.context_check(sw.unwinder(), affected, tid); };
    return g;
  };
  if (force) LG_TRY_VOID(agent.call(protocol::ForceRequest{name}));
  SwitchGoal goal = with_contexts(goal_of(info, extra_check, force));
  if (info.poking && !info.reversed) {
    goal.interiors = info.interiors;
    goal.open_gate = [&]() -> Result<void> {
      LG_TRY_VOID(agent.call(protocol::PokeFinishRequest{name}));
      info.poking = false;
      kill_point("apply.per_thread_switching");
      return ok_result();
    };
  }
  auto forward = sw.switch_all(goal, options.timeout, progress);
  if (forward) {
    kill_point("per_thread.before_complete");
    LG_TRY_VOID(agent.call(protocol::CompleteRequest{name}));
    kill_point("per_thread.after_complete");
    return ok_result();
  }
  if (forward.error().kind != ErrorKind::unsafe) return forward;
  const std::vector<Blocker> held = sw.pending();
  if (options.blockers) *options.blockers = held;
  if (options.on_timeout == OnTimeout::keep)
    return Error(ErrorKind::unsafe, forward.error().message + "; the transition stays in progress", 0,
                 "`livegraft status` shows it; `apply` again continues it, `revert` reverses it, `force` forces it");
  // 1. Threads already switched go back once the code they moved to is off their stacks.
  say(options, "timed out; reversing the transition");
  LG_TRY_VOID(agent.call(protocol::ReverseRequest{name}));
  info.reversed = !info.reversed;
  kill_point("per_thread.after_reverse");
  if (auto r = sw.switch_all(with_contexts(goal_of(info, extra_check, false)), std::max(options.timeout, milliseconds(10000)), progress); !r)
    return Error(ErrorKind::unsafe, fmt::format("{}; reversing it did not finish either: {}", forward.error().message, r.error().message), 0,
                 "the transition stays in progress; `livegraft status` shows it");
  LG_TRY_VOID(agent.call(protocol::CompleteRequest{name}));
  kill_point("per_thread.after_complete");
  std::string hint = "retry later, or raise --timeout";
  if (auto never = never_leaving(held))
    hint = *never + ": apply it with --on-timeout keep, then `livegraft force` switches that thread without a stack check (your call), "
                    "or move the fix into a function it calls";
  return Error(ErrorKind::unsafe, forward.error().message + "; reversed: the process is as it was", 0, hint);
}

}  // namespace

Result<void> add_per_thread_fields(pid_t pid, const ApplyPlan& plan, const std::vector<RemoteAddr>& redirected,
                                   protocol::LoadRequest& req) {
  req.model = protocol::Model::per_thread;
  for (auto& f : req.funcs) {
    auto pf = std::find_if(plan.funcs.begin(), plan.funcs.end(), [&](const PlannedFunc& p) { return p.addr.value == f.old_addr; });
    if (pf == plan.funcs.end()) continue;
    f.old_ranges = {{pf->addr, pf->addr + static_cast<int64_t>(std::max<uint64_t>(pf->size, 1))}};
    f.old_ranges.insert(f.old_ranges.end(), pf->extra_ranges.begin(), pf->extra_ranges.end());
    if (std::find(redirected.begin(), redirected.end(), pf->jump_addr) != redirected.end()) continue;
    size_t avail = static_cast<size_t>(pf->addr.value + pf->size - pf->jump_addr.value);
    LG_TRY(auto code, read_code(pid, pf->jump_addr, std::min<size_t>(32, avail)));
    LG_TRY(f.continuation, x86::relocate_prologue(code, pf->jump_addr.value, pf->old_name));
  }
  return ok_result();
}

namespace {

// SIGTRAP unblocked in the threads that block it (signal_mask.h) for as long as the agent may
// write an int3 with the text_poke protocol: the entry jumps of an apply, and the original
// bytes put back when a revert completes. A thread that meets one must reach the agent's
// handler; with SIGTRAP blocked the kernel would kill the process. Declared after the
// switcher's detach guard, so that it ends while the threads are still held.
class SigtrapScope {
 public:
  SigtrapScope(pid_t pid, Process& process, AgentClient& agent) : pid_(pid), process_(process), unblocked_(process), agent_(agent) {}
  SigtrapScope(const SigtrapScope&) = delete;
  SigtrapScope& operator=(const SigtrapScope&) = delete;
  // After a failure: blocked again only when no int3 is left (the transition was reversed,
  // undone, or kept past its int3s); a transition kept with them leaves it unblocked, and says so.
  ~SigtrapScope() {
    if (unblocked_.threads().empty() || process_.departure()) return;  // a program that exec'd or exited has no int3 of ours
    auto now = agent_.status();
    const protocol::PerThreadTransition* pt = now ? drivable(*now) : nullptr;
    if (now && !(pt && pt_info_from_status(*pt).poking)) {
      unblocked_.restore();
      return;
    }
    std::cerr << fmt::format("livegraft: warning: SIGTRAP stays unblocked in thread(s) {} of process {}: the transition's entry int3s may "
                             "still be in place, and a thread that met one with SIGTRAP blocked would be killed\n",
                             fmt::join(unblocked_.threads(), ", "), pid_);
  }
  Result<void> begin(const OperationOptions& options) {
    std::vector<BlockingThread> blocking = threads_blocking_sigtrap(pid_);
    if (blocking.empty()) return ok_result();
    say(options, fmt::format("unblocking SIGTRAP in {} thread(s) that block it ({}) while int3s may be in the code", blocking.size(),
                             describe_threads(blocking)));
    return unblocked_.begin(blocking, options.timeout);
  }
  // The transition ended: the agent writes no int3 any more.
  void finish() { unblocked_.restore(); }

 private:
  pid_t pid_;
  Process& process_;
  SigtrapUnblock unblocked_;
  AgentClient& agent_;
};

}  // namespace

Result<nlohmann::json> apply_per_thread(pid_t pid, const std::string& abs_path, const ApplyPlan& plan, AgentClient& agent,
                                        bool injected, const std::vector<RemoteAddr>& redirected, const OperationOptions& options) {
  auto req = plan.load_request(abs_path);
  LG_TRY_VOID(add_per_thread_fields(pid, plan, redirected, req));
  say(options, fmt::format("loading patch '{}' into process {} (per-thread)", plan.patch.name, pid));
  LG_TRY(auto loaded, agent.call(std::move(req), plan.patch_fd.get()));
  const std::string& name = plan.patch.name;
  ScopeGuard abort_load([&] { (void)agent.call(protocol::AbortRequest{name}); });
  LG_TRY(auto info, pt_info(loaded.plan));
  LG_TRY(auto now, agent.status());
  LG_TRY(auto process, Process::seize(pid));
  LG_TRY(auto unwinder, unwinder_for(pid, now.mapped_patches()));
  PerThreadSwitcher sw(*process, *unwinder);
  ScopeGuard detach([&] { sw.detach(); });
  SigtrapScope sigtrap(pid, *process, agent);
  LG_TRY_VOID(sigtrap.begin(options));
  GraceWatch grace = grace_for(now, *process, options);
  sw.watch(&grace);

  auto steps = [&]() -> Result<void> {
    kill_point("apply.per_thread_loaded");
    // 1. int3 on each entry: from here on a thread reaching one traps to its stub, which
    // dispatches by the thread's marker.
    LG_TRY_VOID(agent.call(protocol::PokeBeginRequest{name}));
    kill_point("apply.per_thread_int3_written");
    LG_TRY_VOID(agent.call(protocol::SwitchEarlyRequest{name}));
    abort_load.dismiss();  // threads may be switched from here on: reverse, never abort
    kill_point("apply.per_thread_switch_early");
    info.poking = true;

    // 2. Thread by thread, one stop each: the stop that finds a thread outside the entries being
    // written also switches it; once all were seen outside, the entry jumps are written.
    say(options, "switching threads one at a time (per-thread)");
    return drive(sw, agent, name, info, plan.original_ranges(), options, false);
  };
  if (auto r = steps(); !r) {
    Error e = departure_error(*process, std::move(r).error(), fmt::format("the per-thread apply of patch '{}'", name));
    if (process->departure()) abort_load.dismiss();  // nothing to abort: the agent went with the image
    return e;
  }
  reclaim_after(sw, agent, grace);
  sigtrap.finish();  // after the reclaim: SIGTRAP stays unblocked while the agent writes int3s
  detach.dismiss();
  sw.detach();

  return nlohmann::json{{"pid", pid},
                        {"patch", name},
                        {"object", plan.object_path},
                        {"build_id", plan.build_id},
                        {"agent_injected", injected},
                        {"functions", protocol::encode(loaded.patch)["funcs"]},  // a copy: the encoded patch is a temporary
                        {"transition", stats_json(sw.stats())}};
}

Result<nlohmann::json> revert_per_thread(pid_t pid, const std::string& patch_name, AgentClient& agent,
                                         const protocol::StatusResponse& status, const OperationOptions& options) {
  LG_TRY(auto prep, agent.call(protocol::PrepareRevertRequest{patch_name, protocol::Model::per_thread}));
  LG_TRY(auto info, pt_info(prep.plan));
  LG_TRY(auto process, Process::seize(pid));
  LG_TRY(auto unwinder, unwinder_for(pid, status.mapped_patches()));
  PerThreadSwitcher sw(*process, *unwinder);
  ScopeGuard detach([&] { sw.detach(); });
  SigtrapScope sigtrap(pid, *process, agent);
  LG_TRY_VOID(sigtrap.begin(options));
  GraceWatch grace = grace_for(status, *process, options);
  sw.watch(&grace);
  kill_point("revert.per_thread_switching");
  say(options, "switching threads back one at a time (per-thread)");
  if (auto r = drive(sw, agent, patch_name, info, {}, options, false); !r)
    return departure_error(*process, std::move(r).error(), fmt::format("the per-thread revert of patch '{}'", patch_name));
  reclaim_after(sw, agent, grace);
  sigtrap.finish();  // after the reclaim: SIGTRAP stays unblocked while the agent writes int3s
  detach.dismiss();
  sw.detach();
  return nlohmann::json{{"pid", pid}, {"patch", patch_name}, {"transition", stats_json(sw.stats())}};
}

Result<std::optional<nlohmann::json>> handle_transition_in_progress(pid_t pid, AgentClient& agent,
                                                                    const protocol::StatusResponse& status,
                                                                    const std::string& patch_name, Intent intent,
                                                                    const OperationOptions& options) {
  if (!status.transition) return std::optional<nlohmann::json>{};
  const auto& t = *status.transition;
  const std::string& patch = t.patch;
  const std::string kind = protocol::to_string(t.kind);
  auto busy = [&](const char* why) {
    return Error(ErrorKind::busy,
                 fmt::format("a {} transition ({}) of patch '{}' is in progress in process {}{}", protocol::to_string(t.model), kind, patch, pid, why),
                 0, fmt::format("`livegraft status {0}` shows it; `livegraft {1} {0} ...` continues it, `livegraft force {0}` forces it", pid,
                                kind));
  };
  const protocol::PerThreadTransition* pt = drivable(status);
  if (!pt) return busy(" (another livegraft is running it)");
  if (patch != patch_name) return busy("");
  PtInfo info = pt_info_from_status(*pt);
  // Seizing first makes sure no other controller drives it (ptrace admits one tracer).
  LG_TRY(auto process, Process::seize(pid));
  LG_TRY(auto unwinder, unwinder_for(pid, status.mapped_patches()));
  PerThreadSwitcher sw(*process, *unwinder);
  ScopeGuard detach([&] { sw.detach(); });
  SigtrapScope sigtrap(pid, *process, agent);
  LG_TRY_VOID(sigtrap.begin(options));
  GraceWatch grace = grace_for(status, *process, options);
  sw.watch(&grace);
  // Apply of a patch being applied: forward; revert of it: backward (and the other way round).
  bool want_reversed = (intent == Intent::apply) != (t.kind == protocol::TransitionKind::apply);
  auto steps = [&]() -> Result<void> {
    if (want_reversed != info.reversed) {
      say(options, fmt::format("reversing the {} of '{}' in progress", kind, patch));
      LG_TRY_VOID(agent.call(protocol::ReverseRequest{patch}));
      info.reversed = want_reversed;
    } else {
      say(options, fmt::format("continuing the {} of '{}' in progress", kind, patch));
    }
    return drive(sw, agent, patch, info, {}, options, false);
  };
  if (auto r = steps(); !r)
    return departure_error(*process, std::move(r).error(), fmt::format("the per-thread {} of patch '{}'", kind, patch));
  reclaim_after(sw, agent, grace);
  sigtrap.finish();  // after the reclaim: SIGTRAP stays unblocked while the agent writes int3s
  detach.dismiss();
  sw.detach();
  return std::optional<nlohmann::json>(nlohmann::json{{"pid", pid},
                                                      {"patch", patch},
                                                      {"continued", kind},
                                                      {"reversed", info.reversed},
                                                      {"functions", nlohmann::json::array()},
                                                      {"transition", stats_json(sw.stats())}});
}

Result<nlohmann::json> force_per_thread(pid_t pid, AgentClient& agent, const protocol::StatusResponse& status,
                                        const OperationOptions& options) {
  const protocol::PerThreadTransition* pt = drivable(status);
  if (!pt) return make_error(ErrorKind::invalid_argument, "no per-thread transition is in progress in process {}: nothing to force", pid);
  const std::string& patch = status.transition->patch;
  PtInfo info = pt_info_from_status(*pt);
  if (info.poking)
    return Error(ErrorKind::invalid_argument,
                 fmt::format("the transition of '{}' in process {} has not written its entry jumps yet (a controller stopped before): nothing "
                             "can be forced before they are",
                             patch, pid),
                 0, fmt::format("`livegraft {} {} ...` continues it; force it after that if it still waits", protocol::to_string(status.transition->kind), pid));
  LG_TRY(auto process, Process::seize(pid));
  LG_TRY(auto unwinder, unwinder_for(pid, status.mapped_patches()));
  PerThreadSwitcher sw(*process, *unwinder);
  ScopeGuard detach([&] { sw.detach(); });
  SigtrapScope sigtrap(pid, *process, agent);
  LG_TRY_VOID(sigtrap.begin(options));
  GraceWatch grace = grace_for(status, *process, options);
  sw.watch(&grace);
  if (auto r = drive(sw, agent, patch, info, {}, options, true); !r)
    return departure_error(*process, std::move(r).error(), fmt::format("the forced transition of patch '{}'", patch));
  reclaim_after(sw, agent, grace);
  sigtrap.finish();  // after the reclaim: SIGTRAP stays unblocked while the agent writes int3s
  detach.dismiss();
  sw.detach();
  return nlohmann::json{{"pid", pid}, {"patch", patch}, {"kind", protocol::to_string(status.transition->kind)}, {"reversed", info.reversed},
                        {"forced", sw.stats().switched}, {"transition", stats_json(sw.stats())}};
}

Result<void> survey_transition(pid_t pid, const protocol::StatusResponse& status, nlohmann::json& out) {
  const protocol::PerThreadTransition* pt = drivable(status);
  if (!pt) return ok_result();
  PtInfo info = pt_info_from_status(*pt);
  LG_TRY(auto process, Process::seize(pid));
  LG_TRY(auto unwinder, unwinder_for(pid, status.mapped_patches()));
  PerThreadSwitcher sw(*process, *unwinder);
  ScopeGuard detach([&] { sw.detach(); });
  SwitchGoal goal = goal_of(info, {}, false);
  goal.own_stack = true;  // the default rule (status knows no --allow-stack-switching)
  auto surveyed = sw.survey(goal);
  if (!surveyed) return departure_error(*process, std::move(surveyed).error(), "the survey of its threads");
  auto threads = std::move(*surveyed);
  size_t switched = 0;
  nlohmann::json pending = nlohmann::json::array();
  for (const auto& s : threads) {
    if (s.switched) ++switched;
    else pending.push_back({{"tid", s.tid}, {"reason", s.reason}, {"stack", s.stack}});
  }
  auto& t = out["transition"];
  t["threads"] = {{"total", threads.size()}, {"switched", switched}, {"pending", pending}};
  t.erase("check");
  t.erase("check_target");
  t.erase("interiors");
  return ok_result();
}

}  // namespace lg
