// The controller's operations: what `livegraft apply|revert|status|inject` do, returning a JSON
// report (the CLI prints it for people or as is with --json).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.h"
#include "controller/transition.h"

namespace lg {

// docs/consistency.md. per_thread: one thread stopped at a time, each switched when its own
// stack is clean (the default); stop_the_world: every thread stopped, all switched at once.
// immediate: no consistency at all (entry jumps written at once, no stack checks), only for
// patches flagged LIVEGRAFT_PATCH_IMMEDIATE (src/controller/immediate.h).
enum class ConsistencyModel { per_thread, stop_the_world, immediate };

// What a per-thread transition does when --timeout passes: reverse (the process ends as it
// was) or keep it in progress for a later command (apply continues, revert reverses, force).
enum class OnTimeout { reverse, keep };

struct OperationOptions {
  ConsistencyModel model = ConsistencyModel::per_thread;
  OnTimeout on_timeout = OnTimeout::reverse;
  // How long the switch may keep retrying (--timeout); for an injection, how long to look for
  // a thread that may run dlopen. It bounds no wait on the agent: agent_timeout does.
  std::chrono::milliseconds timeout{10000};
  // Bounds each wait on the agent (--agent-timeout): connecting, each request, and for an
  // injection stopping a thread and its dlopen, then the wait for the agent's socket.
  std::chrono::milliseconds agent_timeout{10000};
  std::string agent_path;                       // empty: find it next to the livegraft binary
  std::string symbols_file;                     // apply --symbols: the target's separate debug file
  std::function<void(const std::string&)> progress;  // progress lines for people (may be empty)
  std::vector<Blocker>* blockers = nullptr;     // filled when a transition gives up
  // --allow-stack-switching: patch a process that switches stacks in user space although its
  // scheduler declares no contexts (docs/consistency.md, "Stack switching").
  bool allow_stack_switching = false;
  // Set by apply/revert (stack_switching.h), not by callers: the blockers among the declared
  // suspended coroutine contexts (of thread [tid] when given) for code [affected].
  std::function<Result<std::vector<Blocker>>(Unwinder&, const std::vector<RemoteRange>& affected, std::optional<pid_t> tid)>
      context_check;
};

// The agent library to inject: [configured], else $LIVEGRAFT_AGENT, else next to this binary.
Result<std::string> find_agent_library(const std::string& configured);

Result<nlohmann::json> apply_patch(pid_t pid, const std::string& patch_path, const OperationOptions& options);
Result<nlohmann::json> revert_patch(pid_t pid, const std::string& patch_name, const OperationOptions& options);
// [agent_timeout] bounds every wait on the agent (as OperationOptions::agent_timeout does for the others).
Result<nlohmann::json> patch_status(pid_t pid, std::chrono::milliseconds agent_timeout);
// `livegraft force PID`: switches every pending thread of the per-thread transition in progress
// whatever its stack holds, then completes it (docs/consistency.md, "Force").
Result<nlohmann::json> force_transition(pid_t pid, const OperationOptions& options);
Result<nlohmann::json> inject_agent(pid_t pid, const OperationOptions& options);

}  // namespace lg
