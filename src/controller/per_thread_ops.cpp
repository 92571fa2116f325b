#include "controller/per_thread_ops.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>

#include "common/fd.h"
#include "common/hex.h"
#include "common/kill_point.h"
#include "common/scope_guard.h"
#include "controller/per_thread.h"
#include "controller/stack_switching.h"
#include "x86/prologue.h"

namespace lg {

namespace {

using std::chrono::milliseconds;

void say(const OperationOptions& o, const std::string& line) {
  if (o.progress) o.progress(line);
}

nlohmann::json range_json(const RemoteRange& r) { return nlohmann::json::array({r.lo.value, r.hi.value}); }

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

Result<std::unique_ptr<Unwinder>> unwinder_for(pid_t pid, const nlohmann::json& patches) {
  LG_TRY(auto unwinder, Unwinder::create(pid));
  register_coroutine_stack_ends(pid, *unwinder);  // stack_switching.h
  for (const auto& p : patches) {
    RemoteAddr eh(0);
    uint64_t eh_size = 0;
    if (p.contains("eh_frame") && p["eh_frame"].is_object()) {
      eh = RemoteAddr(p["eh_frame"].value("addr", uint64_t{0}));
      eh_size = p["eh_frame"].value("size", uint64_t{0});
    }
    LG_TRY(auto code, ranges_from_json(p.value("code", nlohmann::json::array())));
    for (const auto& r : code) unwinder->add_code_region(r, eh, eh_size, p.value("name", "patch"));
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
          {"longest_stop_us", s.longest_stop.count()},
          {"total_us", s.total.count()},
          {"stop_parts_us", {{"interrupt_wait", s.in_stop.count()}, {"inspect", s.in_inspect.count()}, {"resume", s.in_resume.count()}}}};
}

struct PtInfo {
  uint64_t id = 0;
  int32_t marker_offset = 0;
  bool reversed = false;
  std::vector<RemoteRange> interiors, check, check_target;
};

Result<PtInfo> pt_info(const nlohmann::json& reply) {
  if (!reply.contains("per_thread") || !reply["per_thread"].is_object())
    return make_error(ErrorKind::agent, "the agent does not support the per-thread model (no 'per_thread' in its reply); use --model stop-the-world");
  const auto& p = reply["per_thread"];
  PtInfo info;
  info.id = p.value("id", uint64_t{0});
  info.marker_offset = p.value("marker_offset", 0);
  LG_TRY(info.interiors, ranges_from_json(p.value("interiors", nlohmann::json::array())));
  LG_TRY(info.check_target, ranges_from_json(p.value("check_target", nlohmann::json::array())));
  LG_TRY(info.check, ranges_from_json(reply.value("check", nlohmann::json::array())));
  return info;
}

// From status["transition"] (a per-thread transition in progress).
Result<PtInfo> pt_info_from_status(const nlohmann::json& t) {
  PtInfo info;
  info.id = t.value("id", uint64_t{0});
  info.marker_offset = t.value("marker_offset", 0);
  info.reversed = t.value("reversed", false);
  LG_TRY(info.check, ranges_from_json(t.value("check", nlohmann::json::array())));
  LG_TRY(info.check_target, ranges_from_json(t.value("check_target", nlohmann::json::array())));
  return info;
}

SwitchGoal goal_of(const PtInfo& info, const std::vector<RemoteRange>& extra_check, bool force) {
  SwitchGoal goal{info.id, info.marker_offset, !info.reversed, info.reversed ? info.check_target : info.check, force};
  if (!info.reversed) goal.affected.insert(goal.affected.end(), extra_check.begin(), extra_check.end());
  return goal;
}

// Drives the transition towards its current goal (the target universe, or back to the initial
// one when [info.reversed]) and completes it. When --timeout passes: reverse it and finish the
// reversal (the process ends as it was before this transition), or keep it in progress.
Result<void> drive(PerThreadSwitcher& sw, AgentClient& agent, const std::string& name, PtInfo& info,
                   const std::vector<RemoteRange>& extra_check, const OperationOptions& options, bool force) {
  int calls = 0;
  auto progress = [&](size_t switched, const std::vector<Blocker>& pending) {
    if (++calls % 10 == 1)
      say(options, fmt::format("waiting: {} thread(s) switched, {} pending (thread {}: {})", switched, pending.size(),
                               pending.front().tid, pending.front().reason));
  };
  // Declared coroutine contexts suspended by a thread keep it pending too (stack_switching.h).
  auto with_contexts = [&](SwitchGoal g) {
    if (options.context_check && !g.force)
      g.context_blockers = [&options, &sw, affected = g.affected](pid_t tid) { return options.context_check(sw.unwinder(), affected, tid); };
    return g;
  };
  if (force) LG_TRY_VOID(agent.request({{"op", "force"}, {"name", name}}));
  auto forward = sw.switch_all(with_contexts(goal_of(info, extra_check, force)), options.timeout, progress);
  if (forward) {
    kill_point("per_thread.before_complete");
    LG_TRY_VOID(agent.request({{"op", "complete"}, {"name", name}}));
    kill_point("per_thread.after_complete");
    return ok_result();
  }
  if (forward.error().kind != ErrorKind::unsafe) return forward;
  if (options.blockers) *options.blockers = sw.pending();
  if (options.on_timeout == OnTimeout::keep)
    return Error(ErrorKind::unsafe, forward.error().message + "; the transition stays in progress", 0,
                 "`livegraft status` shows it; `apply` again continues it, `revert` reverses it, `force` forces it");
  // 1. Threads already switched go back once the code they moved to is off their stacks.
  say(options, "timed out; reversing the transition");
  LG_TRY_VOID(agent.request({{"op", "reverse"}, {"name", name}}));
  info.reversed = !info.reversed;
  kill_point("per_thread.after_reverse");
  if (auto r = sw.switch_all(with_contexts(goal_of(info, extra_check, false)), std::max(options.timeout, milliseconds(10000)), progress); !r)
    return Error(ErrorKind::unsafe, fmt::format("{}; reversing it did not finish either: {}", forward.error().message, r.error().message), 0,
                 "the transition stays in progress; `livegraft status` shows it");
  LG_TRY_VOID(agent.request({{"op", "complete"}, {"name", name}}));
  kill_point("per_thread.after_complete");
  return Error(ErrorKind::unsafe, forward.error().message + "; reversed: the process is as it was", 0, "retry later, or raise --timeout");
}

}  // namespace

Result<void> add_per_thread_fields(pid_t pid, const ApplyPlan& plan, const std::vector<RemoteAddr>& redirected,
                                   nlohmann::json& req) {
  req["model"] = "per-thread";
  for (auto& f : req["funcs"]) {
    uint64_t old_addr = f.value("old_addr", uint64_t{0});
    auto pf = std::find_if(plan.funcs.begin(), plan.funcs.end(), [&](const PlannedFunc& p) { return p.addr.value == old_addr; });
    if (pf == plan.funcs.end()) continue;
    nlohmann::json ranges = nlohmann::json::array({range_json({pf->addr, pf->addr + static_cast<int64_t>(std::max<uint64_t>(pf->size, 1))})});
    for (const auto& r : pf->extra_ranges) ranges.push_back(range_json(r));
    f["old_ranges"] = ranges;
    if (std::find(redirected.begin(), redirected.end(), pf->jump_addr) != redirected.end()) continue;
    size_t avail = static_cast<size_t>(pf->addr.value + pf->size - pf->jump_addr.value);
    LG_TRY(auto code, read_code(pid, pf->jump_addr, std::min<size_t>(32, avail)));
    LG_TRY(auto t, x86::relocate_prologue(code, pf->jump_addr.value, pf->old_name));
    nlohmann::json fixups = nlohmann::json::array();
    for (const auto& x : t.fixups) fixups.push_back({{"offset", x.offset}, {"end", x.end}, {"target", x.target}});
    f["continuation"] = {{"bytes", to_hex(t.bytes)}, {"fixups", fixups}, {"resume", t.resume}, {"displaced", t.displaced}};
  }
  return ok_result();
}

Result<nlohmann::json> apply_per_thread(pid_t pid, const std::string& abs_path, const ApplyPlan& plan, AgentClient& agent,
                                        bool injected, const std::vector<RemoteAddr>& redirected, const OperationOptions& options) {
  auto req = plan.load_request(abs_path);
  LG_TRY_VOID(add_per_thread_fields(pid, plan, redirected, req));
  say(options, fmt::format("loading patch '{}' into process {} (per-thread)", plan.patch.name, pid));
  LG_TRY(auto loaded, agent.request(req, plan.patch_fd.get()));
  const std::string& name = plan.patch.name;
  ScopeGuard abort_load([&] { (void)agent.request({{"op", "abort"}, {"name", name}}); });
  LG_TRY(auto info, pt_info(loaded));
  LG_TRY(auto now, agent.request({{"op", "status"}}));
  LG_TRY(auto process, Process::seize(pid));
  LG_TRY(auto unwinder, unwinder_for(pid, now["patches"]));
  PerThreadSwitcher sw(*process, *unwinder);
  ScopeGuard detach([&] { sw.detach(); });

  kill_point("apply.per_thread_loaded");
  // 1. The entry jumps: int3 first, then (no thread inside the rest of those bytes) the jumps.
  LG_TRY_VOID(agent.request({{"op", "poke_begin"}, {"name", name}}));
  kill_point("apply.per_thread_int3_written");
  LG_TRY_VOID(sw.wait_outside(info.interiors, options.timeout));
  LG_TRY_VOID(agent.request({{"op", "poke_finish"}, {"name", name}}));
  abort_load.dismiss();  // threads are dispatched from here on: reverse, never abort
  kill_point("apply.per_thread_switching");

  // 2. Thread by thread.
  say(options, "switching threads one at a time (per-thread)");
  LG_TRY_VOID(drive(sw, agent, name, info, plan.original_ranges(), options, false));
  detach.dismiss();
  sw.detach();

  nlohmann::json funcs = nlohmann::json::array();
  for (const auto& f : loaded["patch"].value("funcs", nlohmann::json::array())) funcs.push_back(f);
  return nlohmann::json{{"pid", pid},
                        {"patch", name},
                        {"object", plan.object_path},
                        {"build_id", plan.build_id},
                        {"agent_injected", injected},
                        {"functions", funcs},
                        {"transition", stats_json(sw.stats())}};
}

Result<nlohmann::json> revert_per_thread(pid_t pid, const std::string& patch_name, AgentClient& agent,
                                         const nlohmann::json& status, const OperationOptions& options) {
  LG_TRY(auto prep, agent.request({{"op", "prepare_revert"}, {"name", patch_name}, {"model", "per-thread"}}));
  LG_TRY(auto info, pt_info(prep));
  LG_TRY(auto process, Process::seize(pid));
  LG_TRY(auto unwinder, unwinder_for(pid, status["patches"]));
  PerThreadSwitcher sw(*process, *unwinder);
  ScopeGuard detach([&] { sw.detach(); });
  kill_point("revert.per_thread_switching");
  say(options, "switching threads back one at a time (per-thread)");
  LG_TRY_VOID(drive(sw, agent, patch_name, info, {}, options, false));
  detach.dismiss();
  sw.detach();
  return nlohmann::json{{"pid", pid}, {"patch", patch_name}, {"transition", stats_json(sw.stats())}};
}

Result<std::optional<nlohmann::json>> handle_transition_in_progress(pid_t pid, AgentClient& agent, const nlohmann::json& status,
                                                                    const std::string& patch_name, Intent intent,
                                                                    const OperationOptions& options) {
  const auto& t = status.value("transition", nlohmann::json());
  if (!t.is_object()) return std::optional<nlohmann::json>{};
  const std::string patch = t.value("patch", "?"), kind = t.value("kind", "?");
  auto busy = [&](const char* why) {
    return Error(ErrorKind::busy,
                 fmt::format("a {} transition ({}) of patch '{}' is in progress in process {}{}", t.value("model", "?"), kind, patch, pid, why),
                 0, fmt::format("`livegraft status {0}` shows it; `livegraft {1} {0} ...` continues it, `livegraft force {0}` forces it", pid,
                                kind == "apply" ? "apply" : "revert"));
  };
  if (t.value("model", "") != "per-thread" || t.value("phase", "") != "switching") return busy(" (another livegraft is running it)");
  if (patch != patch_name) return busy("");
  LG_TRY(auto info, pt_info_from_status(t));
  // Seizing first makes sure no other controller drives it (ptrace admits one tracer).
  LG_TRY(auto process, Process::seize(pid));
  LG_TRY(auto unwinder, unwinder_for(pid, status["patches"]));
  PerThreadSwitcher sw(*process, *unwinder);
  ScopeGuard detach([&] { sw.detach(); });
  // Apply of a patch being applied: forward; revert of it: backward (and the other way round).
  bool want_reversed = (intent == Intent::apply) != (kind == "apply");
  if (want_reversed != info.reversed) {
    say(options, fmt::format("reversing the {} of '{}' in progress", kind, patch));
    LG_TRY_VOID(agent.request({{"op", "reverse"}, {"name", patch}}));
    info.reversed = want_reversed;
  } else {
    say(options, fmt::format("continuing the {} of '{}' in progress", kind, patch));
  }
  LG_TRY_VOID(drive(sw, agent, patch, info, {}, options, false));
  detach.dismiss();
  sw.detach();
  return std::optional<nlohmann::json>(nlohmann::json{{"pid", pid},
                                                      {"patch", patch},
                                                      {"continued", kind},
                                                      {"reversed", info.reversed},
                                                      {"functions", nlohmann::json::array()},
                                                      {"transition", stats_json(sw.stats())}});
}

Result<nlohmann::json> force_per_thread(pid_t pid, AgentClient& agent, const nlohmann::json& status, const OperationOptions& options) {
  const auto& t = status.value("transition", nlohmann::json());
  if (!t.is_object() || t.value("model", "") != "per-thread" || t.value("phase", "") != "switching")
    return make_error(ErrorKind::invalid_argument, "no per-thread transition is in progress in process {}: nothing to force", pid);
  const std::string patch = t.value("patch", "?");
  LG_TRY(auto info, pt_info_from_status(t));
  LG_TRY(auto process, Process::seize(pid));
  LG_TRY(auto unwinder, unwinder_for(pid, status["patches"]));
  PerThreadSwitcher sw(*process, *unwinder);
  ScopeGuard detach([&] { sw.detach(); });
  LG_TRY_VOID(drive(sw, agent, patch, info, {}, options, true));
  detach.dismiss();
  sw.detach();
  return nlohmann::json{{"pid", pid}, {"patch", patch}, {"kind", t.value("kind", "?")}, {"reversed", info.reversed},
                        {"forced", sw.stats().switched}, {"transition", stats_json(sw.stats())}};
}

Result<void> survey_transition(pid_t pid, nlohmann::json& status) {
  auto& t = status["transition"];
  if (!t.is_object() || t.value("model", "") != "per-thread" || t.value("phase", "") != "switching") return ok_result();
  LG_TRY(auto info, pt_info_from_status(t));
  LG_TRY(auto process, Process::seize(pid));
  LG_TRY(auto unwinder, unwinder_for(pid, status["patches"]));
  PerThreadSwitcher sw(*process, *unwinder);
  ScopeGuard detach([&] { sw.detach(); });
  LG_TRY(auto threads, sw.survey(goal_of(info, {}, false)));
  size_t switched = 0;
  nlohmann::json pending = nlohmann::json::array();
  for (const auto& s : threads) {
    if (s.switched) ++switched;
    else pending.push_back({{"tid", s.tid}, {"reason", s.reason}, {"stack", s.stack}});
  }
  t["threads"] = {{"total", threads.size()}, {"switched", switched}, {"pending", pending}};
  t.erase("check");
  t.erase("check_target");
  t.erase("interiors");
  return ok_result();
}

}  // namespace lg
