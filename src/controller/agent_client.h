// AgentClient: one connection to the agent inside a target (docs/agent-protocol.md).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>

#include <nlohmann/json.hpp>

#include "common/fd.h"
#include "common/result.h"

namespace lg {

// /tmp/livegraft-<uid>/agent-<pid>.sock, <uid> being the target's real uid.
Result<std::string> agent_socket_path(pid_t pid);

class AgentClient {
 public:
  // Connects to the agent of [pid]. not_found when no agent serves that process.
  static Result<AgentClient> connect(pid_t pid);
  // Polls for the socket to accept a connection (after an injection), up to [timeout].
  static Result<AgentClient> connect_with_retry(pid_t pid, std::chrono::milliseconds timeout);

  // Sends one request and returns the response when "ok" is true; otherwise an Error made from
  // the response's "kind" and "error" fields (prefixed with "agent in process N").
  // [fd] >= 0 travels with the request's first byte (SCM_RIGHTS): the patch file for "load".
  Result<nlohmann::json> request(const nlohmann::json& req, int fd = -1);

 private:
  AgentClient(pid_t pid, UniqueFd fd) : pid_(pid), fd_(std::move(fd)) {}
  pid_t pid_;
  UniqueFd fd_;
  std::string buffer_;
};

}  // namespace lg
