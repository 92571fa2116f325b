// apply and revert in the per-thread consistency model (called by operations.cpp when
// OperationOptions::model is per_thread). docs/consistency.md.
#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "common/result.h"
#include "controller/agent_client.h"
#include "controller/apply_plan.h"
#include "controller/operations.h"
#include "process/process.h"
#include "unwind/unwinder.h"

namespace lg {

// Adds what a per-thread load needs to [load_request] (model, each function's original ranges
// and relocated entry); [redirected] are the jump addresses already redirected by the agent.
Result<void> add_per_thread_fields(pid_t pid, const ApplyPlan& plan, const std::vector<RemoteAddr>& redirected,
                                   protocol::LoadRequest& load_request);

Result<nlohmann::json> apply_per_thread(pid_t pid, const std::string& abs_path, const ApplyPlan& plan, AgentClient& agent,
                                        bool injected, const std::vector<RemoteAddr>& redirected, const OperationOptions& options);
Result<nlohmann::json> revert_per_thread(pid_t pid, const std::string& patch_name, AgentClient& agent,
                                         const protocol::StatusResponse& status, const OperationOptions& options);

enum class Intent { apply, revert };
// A per-thread transition left in progress (a killed controller, --on-timeout=keep): an apply
// or revert of the same patch continues or reverses it (the kernel's "write the opposite to
// enabled"); another patch is refused as busy. nullopt: no transition in progress.
Result<std::optional<nlohmann::json>> handle_transition_in_progress(pid_t pid, AgentClient& agent,
                                                                    const protocol::StatusResponse& status,
                                                                    const std::string& patch_name, Intent intent,
                                                                    const OperationOptions& options);
Result<nlohmann::json> force_per_thread(pid_t pid, AgentClient& agent, const protocol::StatusResponse& status,
                                        const OperationOptions& options);
// Adds to [out]["transition"] (the controller's status document made from [status]) the
// threads switched and, for the pending ones, what holds them and their stacks (each thread
// stopped alone, briefly); the agent's ranges are dropped from it.
Result<void> survey_transition(pid_t pid, const protocol::StatusResponse& status, nlohmann::json& out);

// [error], met by a step of [during] ("the per-thread apply of patch 'fix'"), said plainly when
// the process exited or replaced its program (execve) meanwhile, whatever the step was (a read
// of memory that is gone, the agent's socket closed, a wait): "process N replaced its program
// (execve) during ...: the patch is no longer in it". Else [error] as it is. Both models use it.
Error departure_error(Process& process, Error error, const std::string& during);

// An unwinder for process [pid] that knows the code and .eh_frame of [patches] (the agent's
// status "patches"), so that stacks walk through patch code (both models use it).
Result<std::unique_ptr<Unwinder>> unwinder_for(pid_t pid, const std::vector<protocol::PatchInfo>& patches);

}  // namespace lg
