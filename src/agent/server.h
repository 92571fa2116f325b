// The agent's control socket: /tmp/livegraft-<uid>/agent-<pid>.sock, owner-only directory,
// peer credentials checked against the kernel's ptrace rule (docs/agent-protocol.md, Transport).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>

#include "agent/protocol.h"
#include "common/fd.h"
#include "common/result.h"

namespace lg::agent {

// "/tmp/livegraft-<uid>"
std::string socket_dir(uid_t uid);
// "/tmp/livegraft-<uid>/agent-<pid>.sock"
std::string socket_path(uid_t uid, pid_t pid);

// Whose directory a process with these uids serves from: 0 when any of them is 0, the real uid
// when all three are equal, else the effective uid if it differs from the real one, else the
// saved one. A setuid program that kept a privileged uid serves from that uid's directory, which
// its real user can neither enter nor change. The controller computes the same
// (src/controller/agent_client.cpp).
uid_t socket_uid(uid_t real_uid, uid_t effective_uid, uid_t saved_uid);

// Creates the directory with mode 0700, or checks an existing one: it must be a real directory
// (not a symlink) owned by [uid] and not accessible to group or others. Errors: permission.
Result<void> prepare_socket_dir(const std::string& dir, uid_t uid);

// Binds and listens on [path], replacing a stale socket file (one nobody listens on) left by a
// dead process with the same pid. Refuses to replace anything that is not a socket, or a socket
// a live agent serves (a process with our pid number in another pid namespace). The socket is
// bound under a temporary name and renamed into place once it listens, so that a live agent's
// `agent-<pid>.sock` always accepts connections (remove_stale_sockets relies on it).
Result<UniqueFd> listen_on(const std::string& path);

// Removes every `agent-<digits>.sock` in [dir] other than [keep] that is a socket nobody listens
// on (connect() fails with ECONNREFUSED). A socket a live agent serves — possibly one in another
// pid namespace — accepts the connection and stays. Returns how many it removed.
int remove_stale_sockets(const std::string& dir, const std::string& keep);

// ---- Who may control the agent: the kernel's ptrace access rule (kernel/ptrace.c
// __ptrace_may_access and security/commoncap.c cap_ptrace_access_check), for a socket peer.

// A process's credentials as that rule sees them.
struct Credentials {
  uid_t ruid = 0, euid = 0, suid = 0;
  gid_t rgid = 0, egid = 0, sgid = 0;
  uint64_t cap_permitted = 0, cap_effective = 0;  // bit N = capability N (union over threads)
  bool dumpable = true;                           // prctl(PR_GET_DUMPABLE) == SUID_DUMP_USER
  bool uniform = true;                            // every thread has the same uids and gids
};

// The connecting process. uid/gid are SO_PEERCRED's: the effective ids at connect() time, which
// nothing the peer does later changes. Capabilities are only consulted for a peer that was root
// at connect() time (see peer_credentials()); for anyone else caps_known is false and the peer
// counts as holding none.
struct PeerCredentials {
  pid_t pid = 0;  // 0 when the peer is not visible in our pid namespace
  uid_t uid = 0;
  gid_t gid = 0;
  bool caps_known = false;
  uint64_t cap_permitted = 0, cap_effective = 0;
  std::string caps_unknown_reason;  // why caps_known is false for a root peer
};

struct AccessDecision {
  bool allowed = false;
  std::string reason;  // for a refusal: a message a person can act on
};

// 1. A peer holding CAP_SYS_PTRACE is admitted (ptrace_has_cap).
// 2. Otherwise its uid must equal the target's real, effective and saved uid and its gid the
//    target's real, effective and saved gid (every thread's), the target must be dumpable, and
//    the peer's permitted capabilities must include the target's permitted ones.
// So a target holding any privilege its real uid lacks (a setuid program that kept saved uid 0,
// a program with file capabilities, a non-dumpable one) is controllable by root only.
AccessDecision may_control(const PeerCredentials& peer, const Credentials& target, pid_t target_pid);

// This process's credentials: its uids/gids, every thread's capabilities from
// /proc/self/task/*/status (capget() for our own thread when /proc is unreadable), dumpable.
Credentials own_credentials();

// The peer of a connected unix socket: SO_PEERCRED, and for a root peer its capabilities from
// /proc/<pid>/status, where <pid> comes from SO_PEERPIDFD and is validated against the pidfd
// (the file is opened, then the pidfd is checked to be alive, then the file is read: the pid was
// not reused in between). Without SO_PEERPIDFD (kernel < 6.5) SO_PEERCRED's pid is used.
Result<PeerCredentials> peer_credentials(int fd);

// The check run on every accepted connection: a permission error naming the reason, or ok.
Result<void> admit_peer(int fd);

struct ServeOptions {
  // How long one request may run (a patch's constructors or destructors included) before the
  // agent gives up on it: it answers that request with an error, enters the sticky disabled
  // state and keeps answering hello/status. LIVEGRAFT_AGENT_REQUEST_TIMEOUT_MS in the target's
  // environment overrides it (agent_entry.cpp).
  std::chrono::milliseconds request_timeout{30000};
};

// Serves until the listening socket fails (shut down): one thread polls the listening socket
// and up to 16 connections, so a silent or slow client blocks no one; each connection is
// checked by admit_peer() when accepted; requests (one line each, at most one outstanding per
// connection) run one at a time, in arrival order, on an executor thread. When the connection
// whose request opened a transition closes, Agent::connection_closed() settles it.
void serve_forever(int listen_fd, Agent& agent, const ServeOptions& options = {});

}  // namespace lg::agent
