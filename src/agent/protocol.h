// The agent's request handler: docs/agent-protocol.md, one JSON object per line, decoded and
// encoded by the typed protocol module (src/protocol/protocol.h). Thread-safe (requests are
// serialized); never throws: an internal failure disables the agent instead.
#pragma once

#include <mutex>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "agent/registry.h"
#include "protocol/protocol.h"

namespace lg::agent {

inline constexpr int kProtocolVersion = protocol::kVersion;
inline constexpr size_t kMaxRequestLine = protocol::kMaxLine;

// Decodes the fields of a "load" request as dispatch() does, without loading anything (for
// tests). Errors: invalid_argument (or version), with the message a malformed request gets.
Result<LoadRequest> decode_load_request(const nlohmann::json& request) noexcept;

class Agent {
 public:
  // One request line (without its '\n') in, one response line (without '\n') out. [fd]: a
  // descriptor that came with the line (not owned); a "load" reads the patch from it.
  std::string handle_line(std::string_view line, int fd = -1) noexcept;
  nlohmann::json handle(const nlohmann::json& request, int fd = -1) noexcept;
  nlohmann::json handle(protocol::Request request, int fd = -1) noexcept;
  // An error response, as sent for a malformed request or a refused peer.
  static nlohmann::json error_response(const Error& e);
  // The controller's connection ended: settle a transition it left open (Registry).
  void connection_closed() noexcept;

  // For tests and the start-up code; callers must not race with handle().
  Registry& registry() { return registry_; }
  void disable(std::string reason);
  // fork(): the atfork handlers hold the request lock across it (agent_entry.cpp), so that a
  // child never inherits it taken, or the registry half-changed, by a request of the parent.
  bool lock_for_fork() noexcept;
  void unlock_after_fork() noexcept { mu_.unlock(); }

 private:
  nlohmann::json dispatch(protocol::Request& request, int fd);
  protocol::StatusResponse status() const;
  protocol::HelloResponse hello() const;

  std::mutex mu_;
  Registry registry_;
};

}  // namespace lg::agent
