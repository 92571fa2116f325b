// The immediate model (docs/consistency.md, "The immediate model"): no consistency at all, for
// patches whose metadata says they need none (LIVEGRAFT_PATCH_IMMEDIATE, `livegraft build
// --immediate-ok`). The agent writes the entry jumps with the text_poke protocol and completes
// the transition at once: no thread's stack is checked for affected functions and no universe
// marker is written. The one remaining thread visit is the text_poke safety rule (no thread
// inside bytes 1..4 of a jump being written), and only when the jump covers more than one
// instruction. A revert keeps the patch's code mapped for good (a thread may still run it).
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.h"
#include "controller/agent_client.h"
#include "controller/apply_plan.h"
#include "controller/operations.h"

namespace lg {

// Error invalid_argument when the patch does not declare itself immediate.
Result<void> check_immediate_allowed(const ApplyPlan& plan);

Result<nlohmann::json> apply_immediate(pid_t pid, const std::string& abs_path, const ApplyPlan& plan, AgentClient& agent,
                                       bool injected, const std::vector<RemoteAddr>& redirected, const OperationOptions& options);
// Error invalid_argument when the applied patch (in [status]) was not applied with the immediate model.
Result<nlohmann::json> revert_immediate(pid_t pid, const std::string& patch_name, AgentClient& agent,
                                        const protocol::StatusResponse& status,
                                        const OperationOptions& options);

}  // namespace lg
