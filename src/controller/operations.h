// The controller's operations: what `livegraft apply|revert|status|inject` do, returning a JSON
// report (the CLI prints it for people or as is with --json).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.h"
#include "controller/transition.h"

namespace lg {

struct OperationOptions {
  // How long the switch may keep retrying; also bounds every wait on the agent (connecting,
  // each request) and, after an injection, the wait for its socket.
  std::chrono::milliseconds timeout{10000};
  std::string agent_path;                       // empty: find it next to the livegraft binary
  std::string symbols_file;                     // apply --symbols: the target's separate debug file
  std::function<void(const std::string&)> progress;  // progress lines for people (may be empty)
  std::vector<Blocker>* blockers = nullptr;     // filled when a transition gives up
};

// The agent library to inject: [configured], else $LIVEGRAFT_AGENT, else next to this binary.
Result<std::string> find_agent_library(const std::string& configured);

Result<nlohmann::json> apply_patch(pid_t pid, const std::string& patch_path, const OperationOptions& options);
Result<nlohmann::json> revert_patch(pid_t pid, const std::string& patch_name, const OperationOptions& options);
// [timeout] bounds every wait on the agent (as OperationOptions::timeout does for the others).
Result<nlohmann::json> patch_status(pid_t pid, std::chrono::milliseconds timeout);
Result<nlohmann::json> inject_agent(pid_t pid, const OperationOptions& options);

}  // namespace lg
