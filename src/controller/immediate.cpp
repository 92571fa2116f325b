#include "controller/immediate.h"

#include <livegraft/patch.h>

#include <chrono>

#include "common/scope_guard.h"
#include "controller/per_thread.h"
#include "controller/per_thread_ops.h"
#include "process/process.h"

namespace lg {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::duration_cast;
using std::chrono::microseconds;

void say(const OperationOptions& o, const std::string& line) {
  if (o.progress) o.progress(line);
}

nlohmann::json stats_json(size_t visits, Clock::time_point start) {
  return {{"model", "immediate"},
          {"thread_visits", visits},
          {"total_us", duration_cast<microseconds>(Clock::now() - start).count()}};
}

}  // namespace

Result<void> check_immediate_allowed(const ApplyPlan& plan) {
  if (plan.patch.flags & LIVEGRAFT_PATCH_IMMEDIATE) return ok_result();
  return Error(ErrorKind::invalid_argument,
               fmt::format("patch '{}' does not declare itself immediate: --model immediate switches with no "
                           "consistency at all, which only the patch's author can allow",
                           plan.patch.name),
               0,
               "rebuild it with `livegraft build --immediate-ok` (or LIVEGRAFT_PATCH_IMMEDIATE in LIVEGRAFT_PATCH's "
               "flags) if old and new code may run in one call chain; otherwise use --model per-thread");
}

Result<nlohmann::json> apply_immediate(pid_t pid, const std::string& abs_path, const ApplyPlan& plan, AgentClient& agent,
                                       bool injected, const std::vector<RemoteAddr>& redirected, const OperationOptions& options) {
  LG_TRY_VOID(check_immediate_allowed(plan));
  const auto start = Clock::now();
  auto req = plan.load_request(abs_path);
  LG_TRY_VOID(add_per_thread_fields(pid, plan, redirected, req));
  req.model = protocol::Model::immediate;
  const std::string& name = plan.patch.name;
  say(options, fmt::format("loading patch '{}' into process {} (immediate)", name, pid));
  LG_TRY(auto loaded, agent.call(std::move(req), plan.patch_fd.get()));
  ScopeGuard abort_load([&] { (void)agent.call(protocol::AbortRequest{name}); });
  std::vector<RemoteRange> interiors;
  if (loaded.plan.per_thread) interiors = loaded.plan.per_thread->interiors;
  size_t visits = 0;
  LG_TRY_VOID(agent.call(protocol::PokeBeginRequest{name}));
  if (!interiors.empty()) {
    // The text_poke rule, not a consistency check: no thread may be inside the bytes after the
    // int3 when they change (each thread visited once, alone; its stack is not judged).
    LG_TRY(auto process, Process::seize(pid));
    LG_TRY(auto unwinder, unwinder_for(pid, {}));
    PerThreadSwitcher sw(*process, *unwinder);
    ScopeGuard detach([&] { sw.detach(); });
    LG_TRY_VOID(sw.wait_outside(interiors, options.timeout));
    visits = sw.stats().stops_us.size();
    detach.dismiss();
    sw.detach();
  }
  LG_TRY_VOID(agent.call(protocol::PokeFinishRequest{name}));
  abort_load.dismiss();
  LG_TRY_VOID(agent.call(protocol::CompleteRequest{name}));

  return nlohmann::json{{"pid", pid},
                        {"patch", name},
                        {"object", plan.object_path},
                        {"build_id", plan.build_id},
                        {"agent_injected", injected},
                        {"functions", protocol::encode(loaded.patch)["funcs"]},  // a copy: the encoded patch is a temporary
                        {"transition", stats_json(visits, start)}};
}

Result<nlohmann::json> revert_immediate(pid_t pid, const std::string& patch_name, AgentClient& agent,
                                        const protocol::StatusResponse& status, const OperationOptions& options) {
  const auto start = Clock::now();
  if (const protocol::PatchInfo* p = status.find_patch(patch_name); p && p->model != protocol::Model::immediate)
    return Error(ErrorKind::invalid_argument,
                 fmt::format("patch '{}' was applied with the {} model: only a patch applied with --model immediate "
                             "(its metadata declares it immediate) may be reverted without consistency",
                             patch_name, protocol::to_string(p->model)),
                 0, "revert it with --model per-thread or --model stop-the-world");
  say(options, fmt::format("reverting patch '{}' in process {} (immediate)", patch_name, pid));
  LG_TRY_VOID(agent.call(protocol::PrepareRevertRequest{patch_name, protocol::Model::immediate}));
  // Every thread moves at once whatever its stack holds: the patch's code stays mapped for good.
  LG_TRY_VOID(agent.call(protocol::ForceRequest{patch_name}));
  LG_TRY_VOID(agent.call(protocol::CompleteRequest{patch_name}));
  return nlohmann::json{{"pid", pid}, {"patch", patch_name}, {"transition", stats_json(0, start)}};
}

}  // namespace lg
