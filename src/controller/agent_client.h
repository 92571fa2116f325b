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
  // Connects to the agent of [pid]. not_found when no agent serves that process. [timeout]
  // bounds the connect (a full listen backlog blocks it) and every later request.
  static Result<AgentClient> connect(pid_t pid, std::chrono::milliseconds timeout);
  // Polls for the socket to accept a connection (after an injection), up to [timeout].
  static Result<AgentClient> connect_with_retry(pid_t pid, std::chrono::milliseconds timeout);

  // Sends one request and returns the response when "ok" is true; otherwise an Error made from
  // the response's "kind" and "error" fields (prefixed with "agent in process N"). Errors of
  // its own: invalid_argument when [req] holds a string that is not valid UTF-8 (nothing is
  // sent); timeout when the agent does not answer within the connection's timeout ("did not
  // answer within N ms"); agent when the connection breaks or the reply is not JSON. Never
  // throws. After a timeout the connection is closed (a late reply must not be read as the
  // answer to the next request; the agent settles an open transition when it sees the close)
  // and every later request fails at once.
  // [fd] >= 0 travels with the request's first byte (SCM_RIGHTS): the patch file for "load".
  Result<nlohmann::json> request(const nlohmann::json& req, int fd = -1);

  std::chrono::milliseconds timeout() const { return timeout_; }

 private:
  AgentClient(pid_t pid, UniqueFd fd, std::chrono::milliseconds timeout)
      : pid_(pid), fd_(std::move(fd)), timeout_(timeout) {}
  Result<nlohmann::json> request_unchecked(const nlohmann::json& req, int fd);
  pid_t pid_;
  UniqueFd fd_;
  std::chrono::milliseconds timeout_;
  std::string buffer_;
  std::string dropped_;  // why the connection was closed, empty while it is usable
};

}  // namespace lg
