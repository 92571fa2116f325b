// The agent's control socket: /tmp/livegraft-<uid>/agent-<pid>.sock, owner-only directory,
// peer credentials checked, connections served one at a time (docs/agent-protocol.md).
#pragma once

#include <sys/types.h>

#include <string>

#include "agent/protocol.h"
#include "common/fd.h"
#include "common/result.h"

namespace lg::agent {

// "/tmp/livegraft-<uid>"
std::string socket_dir(uid_t uid);
// "/tmp/livegraft-<uid>/agent-<pid>.sock"
std::string socket_path(uid_t uid, pid_t pid);

// Creates the directory with mode 0700, or checks an existing one: it must be a real directory
// (not a symlink) owned by [uid] and not accessible to group or others. Errors: permission.
Result<void> prepare_socket_dir(const std::string& dir, uid_t uid);

// Binds and listens on [path], replacing a stale socket file left by a dead process with the
// same pid. Refuses to replace anything that is not a socket.
Result<UniqueFd> listen_on(const std::string& path);

// Whether a peer with [peer_uid] may control an agent running as [real_uid]/[effective_uid].
bool peer_allowed(uid_t peer_uid, uid_t real_uid, uid_t effective_uid);

// Serves one accepted connection until EOF or an error: checks SO_PEERCRED, then answers one
// response line per request line.
void serve_connection(int fd, Agent& agent);

// Accepts and serves connections forever (until accept fails with something else than EINTR /
// ECONNABORTED, e.g. the listening socket was shut down).
void serve_forever(int listen_fd, Agent& agent);

}  // namespace lg::agent
