#include "controller/per_thread_ops.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>

#include "common/fd.h"
#include "common/hex.h"
#include "common/scope_guard.h"
#include "controller/per_thread.h"
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

Result<std::unique_ptr<Unwinder>> unwinder_for(pid_t pid, const nlohmann::json& patches) {
  LG_TRY(auto unwinder, Unwinder::create(pid));
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
          {"thread_stops", s.stops_us.size()},
          {"stop_p50_us", percentile(s.stops_us, 0.5)},
          {"stop_p99_us", percentile(s.stops_us, 0.99)},
          {"longest_stop_us", s.longest_stop.count()},
          {"total_us", s.total.count()}};
}

struct PtInfo {
  uint64_t id = 0;
  int32_t marker_offset = 0;
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

// Runs the switching phase: forward; on timeout reversed back to where it started. Returns
// the forward failure (after a successful reversal) so the caller can report it.
Result<void> run_switch(PerThreadSwitcher& sw, AgentClient& agent, const std::string& name, const PtInfo& info,
                        const std::vector<RemoteRange>& extra_check, const OperationOptions& options, const char* what) {
  SwitchGoal goal{info.id, info.marker_offset, true, info.check};
  goal.affected.insert(goal.affected.end(), extra_check.begin(), extra_check.end());
  auto progress = [&](size_t switched, const std::vector<Blocker>& pending) {
    static thread_local int calls = 0;
    if (++calls % 10 == 1)
      say(options, fmt::format("waiting: {} thread(s) switched, {} pending (first: thread {}: {})", switched, pending.size(),
                               pending.front().tid, pending.front().reason));
  };
  auto forward = sw.switch_all(goal, options.timeout, progress);
  if (forward) return ok_result();
  if (forward.error().kind != ErrorKind::unsafe) return forward;
  if (options.blockers) *options.blockers = sw.pending();
  // 1. Timed out: reverse, so that the process is left as it was (threads already switched go
  //    back once the new code is off their stacks).
  say(options, fmt::format("timed out; reversing the {}", what));
  LG_TRY_VOID(agent.request({{"op", "reverse"}, {"name", name}}));
  SwitchGoal back{info.id, info.marker_offset, false, info.check_target};
  if (auto r = sw.switch_all(back, std::max(options.timeout, milliseconds(10000)), progress); !r)
    return Error(ErrorKind::unsafe,
                 fmt::format("{}; reversing it did not finish either: {}", forward.error().message, r.error().message), 0,
                 "the transition stays in progress; `livegraft status` shows it");
  LG_TRY_VOID(agent.request({{"op", "complete"}, {"name", name}}));
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
  LG_TRY(auto loaded, agent.request(req));
  const std::string& name = plan.patch.name;
  ScopeGuard abort_load([&] { (void)agent.request({{"op", "abort"}, {"name", name}}); });
  LG_TRY(auto info, pt_info(loaded));
  LG_TRY(auto now, agent.request({{"op", "status"}}));
  LG_TRY(auto process, Process::seize(pid));
  LG_TRY(auto unwinder, unwinder_for(pid, now["patches"]));
  PerThreadSwitcher sw(*process, *unwinder);
  ScopeGuard detach([&] { sw.detach(); });

  // 1. The entry jumps: int3 first, then (no thread inside the rest of those bytes) the jumps.
  LG_TRY_VOID(agent.request({{"op", "poke_begin"}, {"name", name}}));
  LG_TRY_VOID(sw.wait_outside(info.interiors, options.timeout));
  LG_TRY_VOID(agent.request({{"op", "poke_finish"}, {"name", name}}));
  abort_load.dismiss();  // threads are dispatched from here on: reverse, never abort

  // 2. Thread by thread.
  say(options, "switching threads one at a time (per-thread)");
  LG_TRY_VOID(run_switch(sw, agent, name, info, plan.original_ranges(), options, "apply"));
  if (auto c = agent.request({{"op", "complete"}, {"name", name}}); !c)
    return Error(ErrorKind::agent, fmt::format("every thread of process {} runs patch '{}', but the agent did not complete it: {}", pid, name,
                                               c.error().message));
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
  say(options, "switching threads back one at a time (per-thread)");
  LG_TRY_VOID(run_switch(sw, agent, patch_name, info, {}, options, "revert"));
  if (auto c = agent.request({{"op", "complete"}, {"name", patch_name}}); !c)
    return Error(ErrorKind::agent, fmt::format("no thread of process {} runs patch '{}' any more, but the agent could not unload it: {}", pid,
                                               patch_name, c.error().message));
  detach.dismiss();
  sw.detach();
  return nlohmann::json{{"pid", pid}, {"patch", patch_name}, {"transition", stats_json(sw.stats())}};
}

}  // namespace lg
