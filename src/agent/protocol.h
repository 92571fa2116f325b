// The agent's request handler: docs/agent-protocol.md, one JSON object per line, decoded and
// encoded by the typed protocol module (src/protocol/protocol.h). Thread-safe (requests are
// serialized); never throws: an internal failure disables the agent instead.
#pragma once

#include <atomic>
#include <mutex>
#include <optional>
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
  // Whether a transition is open (false in a child forked mid-request, whose registry is not
  // read). Called by the executor between requests.
  bool transition_open() const { return !forked_mid_request_ && registry_.transition().has_value(); }

  // hello and status as they were before the state-changing request that runs now (or ran
  // last): published, complete, before the request changes anything. The server answers
  // hello/status from it while a request is wedged; a child forked mid-request answers from it.
  // Null before the first state-changing request.
  struct Snapshot {
    nlohmann::json hello, status;
  };
  const Snapshot* snapshot() const { return snapshot_.load(std::memory_order_acquire); }

  // fork(): the atfork handlers hold the request lock across it (agent_entry.cpp), so that a
  // child never inherits it taken, or the registry half-changed, by a request of the parent.
  // lock_for_fork() waits at most kForkWaitMs for a running request; the parent's fork() is
  // never delayed longer.
  static constexpr int kForkWaitMs = 200;
  bool lock_for_fork() noexcept;
  void unlock_after_fork() noexcept { mu_.unlock(); }
  // In a forked child whose parent's fork() went ahead without the request lock (a request
  // ran past kForkWaitMs). The lock's holder is a thread of the parent: the lock is reset.
  // Returns true when the child's copy of the registry is consistent anyway — the lock was
  // free by the time of the fork, or its holder ran hello/status or had changed nothing yet —
  // and the child serves normally. false when the registry was copied in the middle of a
  // state-changing request: from then on hello/status answer the snapshot taken before that
  // request with the reason as `disabled`, every other request is refused with it, and the
  // registry is never read or written again (docs/consistency.md, "fork()").
  bool recover_in_forked_child() noexcept;
  const std::optional<std::string>& forked_mid_request() const { return forked_mid_request_; }

 private:
  class Busy;
  nlohmann::json dispatch(protocol::Request& request, int fd);
  nlohmann::json answer_forked_mid_request(const protocol::Request& request) const;
  protocol::StatusResponse status() const;
  protocol::HelloResponse hello() const;

  std::mutex mu_;
  Registry registry_;
  // What holds mu_ and may change the registry: a request's op name (a string literal), or
  // null while no state-changing request runs (set after the snapshot, cleared after the last
  // change, both under mu_). A forked child reads its copy to tell a torn registry.
  std::atomic<const char*> busy_{nullptr};
  int64_t busy_since_ms_ = 0;
  std::atomic<const Snapshot*> snapshot_{nullptr};  // replaced whole, never changed in place
  std::optional<std::string> forked_mid_request_;   // set only in a child, before it serves
};

}  // namespace lg::agent
