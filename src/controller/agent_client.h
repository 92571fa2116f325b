// AgentClient: one connection to the agent inside a target (docs/agent-protocol.md).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>

#include <nlohmann/json.hpp>

#include "common/fd.h"
#include "common/result.h"
#include "protocol/protocol.h"

namespace lg {

// The agent socket of [pid]: <dir>/agent-<pid>.sock in the first trusted directory of
// protocol::socket_dirs(uid) that holds it, uid as protocol::socket_uid() of the target's uids.
// not_found when none does; permission when no agent could serve from any of them (naming
// each and why, with what to do).
Result<std::string> agent_socket_path(pid_t pid);

// Before connecting to or injecting the agent of [pid]: some directory of protocol::socket_dirs() must be one
// the agent can serve from. When none is (another user created /tmp/livegraft-<uid> first and
// the user has no /run/user/<uid>), a controller running as root creates
// protocol::root_made_socket_dir(uid) for the target's uid; anyone else gets a permission error
// naming each directory and why, with what to do, before anything is injected.
Result<void> prepare_agent_socket_dir(pid_t pid);

class AgentClient {
 public:
  // Connects to the agent of [pid]. not_found when no agent serves that process. [timeout]
  // bounds the connect (a full listen backlog blocks it) and every later request.
  static Result<AgentClient> connect(pid_t pid, std::chrono::milliseconds timeout);
  // Polls for the socket to accept a connection (after an injection), up to [timeout].
  static Result<AgentClient> connect_with_retry(pid_t pid, std::chrono::milliseconds timeout);

  // Typed requests (src/protocol/protocol.h): sends [req] and decodes the response of its type.
  // Errors: as request(); agent when the reply does not decode ("the agent of process N sent a
  // reply livegraft cannot use to 'status': field 'patches[0].name' must be a string").
  template <class Req>
  Result<typename protocol::ResponseOf<Req>::type> call(Req req, int fd = -1) {
    using Resp = typename protocol::ResponseOf<Req>::type;
    const auto op = Req::op;
    LG_TRY(auto reply, send(protocol::Request{std::move(req)}, fd));
    auto decoded = protocol::decode_response<Resp>(reply);
    if (!decoded) return unusable_reply(op, decoded.error());
    return std::move(decoded).value();
  }
  Result<protocol::HelloResponse> hello() { return call(protocol::HelloRequest{}); }
  Result<protocol::StatusResponse> status() { return call(protocol::StatusRequest{}); }

  // The lower-level call: sends one request and returns the response when "ok" is true;
  // otherwise an Error made from the response's "kind" and "error" fields (prefixed with "agent
  // in process N"). A request without "v" gets this livegraft's protocol version. Errors of its
  // own: version when the reply is of another protocol version than this livegraft's ("agent in
  // process N speaks protocol X, this livegraft speaks Y: ..."); invalid_argument when [req]
  // holds a string that is not valid UTF-8 (nothing is sent); timeout when the agent does not
  // answer within the connection's timeout ("did not answer within N ms"); agent when the
  // connection breaks or the reply is not JSON. Never throws. After a timeout the connection is
  // closed (a late reply must not be read as the answer to the next request; the agent settles
  // an open transition when it sees the close) and every later request fails at once. Before
  // the first request other than hello/status, when no reply told it the agent's version yet,
  // it sends hello (an agent of protocol 1 would not refuse a request of another version).
  // [fd] >= 0 travels with the request's first byte (SCM_RIGHTS): the patch file for "load".
  Result<nlohmann::json> request(const nlohmann::json& req, int fd = -1);

  // The protocol version this livegraft speaks: protocol::kVersion, or for tests the value of
  // LIVEGRAFT_TEST_PROTOCOL_VERSION in the environment (to check the agent's refusal).
  static int speaks();

  std::chrono::milliseconds timeout() const { return timeout_; }

 private:
  AgentClient(pid_t pid, UniqueFd fd, std::chrono::milliseconds timeout)
      : pid_(pid), fd_(std::move(fd)), timeout_(timeout) {}
  Result<nlohmann::json> send(const protocol::Request& req, int fd);
  Result<nlohmann::json> request_unchecked(const nlohmann::json& req, int fd);
  Result<nlohmann::json> exchange(const nlohmann::json& req, int fd);
  Error unusable_reply(protocol::Op op, const Error& e) const;
  pid_t pid_;
  UniqueFd fd_;
  std::chrono::milliseconds timeout_;
  std::string buffer_;
  std::string dropped_;  // why the connection was closed, empty while it is usable
  bool version_known_ = false;  // a reply of our version came: the agent checks "v"
};

}  // namespace lg
