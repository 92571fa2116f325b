// The agent's request handler: docs/agent-protocol.md, one JSON object per line. Thread-safe
// (requests are serialized); never throws: an internal failure disables the agent instead.
#pragma once

#include <mutex>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "agent/registry.h"

namespace lg::agent {

inline constexpr int kProtocolVersion = 1;
inline constexpr size_t kMaxRequestLine = 1 << 20;

// Decodes the fields of a "load" request as dispatch() does, without loading anything (for the
// fuzzer and tests). Errors: invalid_argument, with the message a malformed request gets.
Result<LoadRequest> decode_load_request(const nlohmann::json& request) noexcept;

class Agent {
 public:
  // One request line (without its '\n') in, one response line (without '\n') out. [fd]: a
  // descriptor that came with the line (not owned); a "load" reads the patch from it.
  std::string handle_line(std::string_view line, int fd = -1) noexcept;
  nlohmann::json handle(const nlohmann::json& request, int fd = -1) noexcept;
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
  nlohmann::json dispatch(const nlohmann::json& request, int fd);
  nlohmann::json status_json() const;

  std::mutex mu_;
  Registry registry_;
};

}  // namespace lg::agent
