#include "controller/immediate.h"

#include <livegraft/patch.h>

#include <chrono>
#include <memory>

#include "common/scope_guard.h"
#include "controller/per_thread.h"
#include "controller/per_thread_ops.h"
#include "controller/signal_mask.h"
#include "process/process.h"

namespace lg {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::duration_cast;
using std::chrono::microseconds;

void say(const OperationOptions& o, const std::string& line) {
  if (o.progress) o.progress(line);
}

// The threads that block SIGTRAP (HAProxy's workers) have it unblocked while an int3 of the
// text_poke protocol may be in the code, as in the per-thread model (signal_mask.h): the
// process is seized for it, and held until restore(), which needs the threads traced to take
// a trap queued behind a mask before blocking SIGTRAP again. Declared before the guard that
// undoes the load, so it outlives it: the int3s go first, then the masks come back.
class ImmediateSigtrap {
 public:
  Result<void> begin(pid_t pid, const OperationOptions& options) {
    std::vector<BlockingThread> blocking = threads_blocking_sigtrap(pid);
    if (blocking.empty()) return ok_result();
    LG_TRY(process_, Process::seize(pid));
    say(options, fmt::format("unblocking SIGTRAP in {} thread(s) that block it ({}) while int3s may be in the code",
                             blocking.size(), describe_threads(blocking)));
    unblocked_ = std::make_unique<SigtrapUnblock>(*process_);
    return unblocked_->begin(blocking, options.timeout);
  }
  // The seized process when begin() unblocked some thread, else null.
  Process* process() { return unblocked_ ? process_.get() : nullptr; }
  // No int3 of the agent's is left: SIGTRAP blocked again where it was.
  void restore() {
    if (unblocked_) unblocked_->restore();
    unblocked_.reset();
  }

 private:
  std::unique_ptr<Process> process_;
  std::unique_ptr<SigtrapUnblock> unblocked_;  // (std::optional trips GCC 12's -Wmaybe-uninitialized)
};

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
  ImmediateSigtrap sigtrap;
  ScopeGuard abort_load([&] {
    (void)agent.call(protocol::AbortRequest{name});  // takes the int3s away
    sigtrap.restore();
  });
  LG_TRY_VOID(sigtrap.begin(pid, options));
  std::vector<RemoteRange> interiors;
  if (loaded.plan.per_thread) interiors = loaded.plan.per_thread->interiors;
  size_t visits = 0;
  LG_TRY_VOID(agent.call(protocol::PokeBeginRequest{name}));
  if (!interiors.empty()) {
    // The text_poke rule, not a consistency check: no thread may be inside the bytes after the
    // int3 when they change (each thread visited once, alone; its stack is not judged).
    std::unique_ptr<Process> own;
    Process* process = sigtrap.process();
    if (!process) {
      LG_TRY(own, Process::seize(pid));
      process = own.get();
    }
    LG_TRY(auto unwinder, unwinder_for(pid, {}));
    PerThreadSwitcher sw(*process, *unwinder);
    LG_TRY_VOID(sw.wait_outside(interiors, options.timeout));
    visits = sw.stats().stops_us.size();
  }
  LG_TRY_VOID(agent.call(protocol::PokeFinishRequest{name}));
  sigtrap.restore();
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
  // The completion gives the entries their original bytes back with text_poke: int3s again.
  ImmediateSigtrap sigtrap;
  ScopeGuard restore([&] { sigtrap.restore(); });
  LG_TRY_VOID(sigtrap.begin(pid, options));
  LG_TRY_VOID(agent.call(protocol::CompleteRequest{patch_name}));
  return nlohmann::json{{"pid", pid}, {"patch", patch_name}, {"transition", stats_json(0, start)}};
}

}  // namespace lg
