#include "agent/server.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <cstring>
#include <vector>

namespace lg::agent {

std::string socket_dir(uid_t uid) { return fmt::format("/tmp/livegraft-{}", uid); }

std::string socket_path(uid_t uid, pid_t pid) { return fmt::format("{}/agent-{}.sock", socket_dir(uid), pid); }

uid_t socket_uid(uid_t real_uid, uid_t effective_uid, uid_t saved_uid) {
  if (real_uid == 0 || effective_uid == 0 || saved_uid == 0) return 0;
  if (effective_uid != real_uid) return effective_uid;
  return saved_uid;
}

Result<void> prepare_socket_dir(const std::string& dir, uid_t uid) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return make_errno_error(ErrorKind::io, "mkdir {}", dir);
  struct stat st{};
  if (::lstat(dir.c_str(), &st) != 0) return make_errno_error(ErrorKind::io, "stat {}", dir);
  if (!S_ISDIR(st.st_mode)) return make_error(ErrorKind::permission, "{} is not a directory (a symlink?); refusing to use it", dir);
  if (st.st_uid != uid) return make_error(ErrorKind::permission, "{} is owned by uid {}, not {}; refusing to use it", dir, st.st_uid, uid);
  if (st.st_mode & 077)
    return make_error(ErrorKind::permission, "{} has mode {:o}, accessible to group or others; refusing to use it", dir, st.st_mode & 07777);
  return ok_result();
}

namespace {

enum class SocketState { listening, stale, unknown };

// Whether someone listens on the unix socket at [path]: a non-blocking connect() succeeds (or
// finds the backlog full: EAGAIN) when a listener exists, and fails with ECONNREFUSED when the
// file is a socket nobody listens on any more.
SocketState probe_socket(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) return SocketState::unknown;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return SocketState::unknown;
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) return SocketState::listening;
  if (errno == EAGAIN || errno == EINPROGRESS) return SocketState::listening;
  if (errno == ECONNREFUSED) return SocketState::stale;
  return SocketState::unknown;
}

bool is_agent_socket_name(const char* name) {
  if (std::strncmp(name, "agent-", 6) != 0) return false;
  const char* p = name + 6;
  if (!std::isdigit(static_cast<unsigned char>(*p))) return false;
  while (std::isdigit(static_cast<unsigned char>(*p))) ++p;
  return std::strcmp(p, ".sock") == 0;
}

}  // namespace

Result<UniqueFd> listen_on(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::string tmp = path + ".new";
  if (tmp.size() >= sizeof addr.sun_path) return make_error(ErrorKind::invalid_argument, "socket path {} is too long", path);
  std::memcpy(addr.sun_path, tmp.c_str(), tmp.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return make_errno_error(ErrorKind::io, "socket");
  struct stat st{};
  if (::lstat(path.c_str(), &st) == 0) {
    // 1. Our pid is in the name, so whatever is there belongs to a dead process that had our
    //    pid, or to a live process with our pid number in another pid namespace sharing /tmp
    //    (the single-instance lock keeps a second agent of this process from getting here).
    if (!S_ISSOCK(st.st_mode)) return make_error(ErrorKind::permission, "{} exists and is not a socket; refusing to replace it", path);
    switch (probe_socket(path)) {
      case SocketState::stale: break;  // replaced by the rename below
      case SocketState::listening:
        return make_error(ErrorKind::busy, "{} is served by a live agent (a process with pid {} in another pid namespace?); not replacing it",
                          path, ::getpid());
      case SocketState::unknown: return make_errno_error(ErrorKind::io, "cannot tell whether {} is stale", path);
    }
  }
  // 2. Bound under a temporary name and renamed into place once it listens: a file named
  //    agent-<pid>.sock that refuses connections is therefore always stale (remove_stale_sockets).
  if (::unlink(tmp.c_str()) != 0 && errno != ENOENT) return make_errno_error(ErrorKind::io, "unlink {}", tmp);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return make_errno_error(ErrorKind::io, "bind {}", tmp);
  if (::listen(fd.get(), 8) != 0 || ::rename(tmp.c_str(), path.c_str()) != 0) {
    auto e = make_errno_error(ErrorKind::io, "listen on {}", path);
    ::unlink(tmp.c_str());
    return e;
  }
  return fd;
}

int remove_stale_sockets(const std::string& dir, const std::string& keep) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return 0;
  std::string keep_name = keep.substr(keep.rfind('/') + 1);
  int removed = 0;
  while (dirent* e = ::readdir(d)) {
    if (!is_agent_socket_name(e->d_name) || keep_name == e->d_name) continue;
    std::string path = dir + "/" + e->d_name;
    struct stat before{}, after{};
    if (::lstat(path.c_str(), &before) != 0 || !S_ISSOCK(before.st_mode)) continue;
    if (probe_socket(path) != SocketState::stale) continue;
    // The same file still (not a new agent's socket renamed over it meanwhile).
    if (::lstat(path.c_str(), &after) != 0 || after.st_ino != before.st_ino || after.st_dev != before.st_dev) continue;
    if (::unlink(path.c_str()) == 0) ++removed;
  }
  ::closedir(d);
  return removed;
}

// ---- Peer credentials and the ptrace rule

namespace {

constexpr int kCapSysPtrace = 19;  // <linux/capability.h> CAP_SYS_PTRACE

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77  // <asm-generic/socket.h>, Linux 6.5
#endif

// The fields of a /proc/PID/status text that the ptrace rule needs.
struct StatusIds {
  unsigned long uid[4] = {}, gid[4] = {};  // real, effective, saved, filesystem
  uint64_t cap_permitted = 0, cap_effective = 0;
  int found = 0;                           // bit 0 Uid, 1 Gid, 2 CapPrm, 3 CapEff
};

StatusIds parse_status(const std::string& text) {
  StatusIds s;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    auto ids = [&](const char* key, unsigned long* out, int bit) {
      if (line.rfind(key, 0) != 0) return;
      if (std::sscanf(line.c_str() + std::strlen(key), "%lu %lu %lu %lu", &out[0], &out[1], &out[2], &out[3]) == 4) s.found |= 1 << bit;
    };
    auto caps = [&](const char* key, uint64_t* out, int bit) {
      if (line.rfind(key, 0) != 0) return;
      unsigned long long v = 0;
      if (std::sscanf(line.c_str() + std::strlen(key), "%llx", &v) == 1) *out = v, s.found |= 1 << bit;
    };
    ids("Uid:", s.uid, 0);
    ids("Gid:", s.gid, 1);
    caps("CapPrm:", &s.cap_permitted, 2);
    caps("CapEff:", &s.cap_effective, 3);
  }
  return s;
}

bool read_all(int fd, std::string* out) {
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    if (n == 0) return true;
    out->append(buf, static_cast<size_t>(n));
  }
}

bool own_thread_caps(uint64_t* permitted, uint64_t* effective) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  if (::syscall(SYS_capget, &header, data) != 0) return false;
  *permitted = data[0].permitted | static_cast<uint64_t>(data[1].permitted) << 32;
  *effective = data[0].effective | static_cast<uint64_t>(data[1].effective) << 32;
  return true;
}

// The pid a pidfd refers to, in our pid namespace: the "Pid:" line of its fdinfo (0: not
// visible in our namespace, -1: exited).
pid_t pidfd_pid(int pidfd) {
  std::string text;
  UniqueFd info(::open(fmt::format("/proc/self/fdinfo/{}", pidfd).c_str(), O_RDONLY | O_CLOEXEC));
  if (!info.valid() || !read_all(info.get(), &text)) return 0;
  auto pos = text.find("\nPid:");
  if (pos == std::string::npos) return 0;
  return static_cast<pid_t>(std::strtol(text.c_str() + pos + 5, nullptr, 10));
}

std::string privileges_beyond_real_uid(const Credentials& t) {
  std::vector<std::string> p;
  if (t.euid != t.ruid) p.push_back(fmt::format("effective uid {}", t.euid));
  if (t.suid != t.ruid) p.push_back(fmt::format("saved uid {}", t.suid));
  if (t.egid != t.rgid) p.push_back(fmt::format("effective gid {}", t.egid));
  if (t.sgid != t.rgid) p.push_back(fmt::format("saved gid {}", t.sgid));
  if (!t.uniform) p.push_back("threads with other credentials");
  std::string out;
  for (const auto& s : p) out += (out.empty() ? "" : ", ") + s;
  return out;
}

}  // namespace

AccessDecision may_control(const PeerCredentials& peer, const Credentials& t, pid_t pid) {
  // 1. ptrace_has_cap(): CAP_SYS_PTRACE in the peer's effective set overrides everything below.
  if (peer.caps_known && (peer.cap_effective >> kCapSysPtrace & 1)) return {true, ""};
  const std::string root_only = "only root (CAP_SYS_PTRACE) may control its agent, as only root may ptrace it";
  // 2. The same uid and gid as every one of the target's real, effective and saved ids.
  std::string privileged = privileges_beyond_real_uid(t);
  if (!privileged.empty())
    return {false, fmt::format("process {} runs with privileges its real uid {} does not have ({}): {}", pid, t.ruid, privileged, root_only)};
  if (peer.uid != t.ruid)
    return {false, fmt::format("uid {} may not control process {} (owned by uid {}); run as that user or root", peer.uid, pid, t.ruid)};
  if (peer.gid != t.rgid)
    return {false, fmt::format("uid {} with gid {} may not control process {} (gid {}): the kernel would not let it ptrace the process; "
                               "run with that group or as root",
                               peer.uid, peer.gid, pid, t.rgid)};
  // 3. cap_ptrace_access_check(): the target's permitted capabilities within the peer's.
  uint64_t peer_permitted = peer.caps_known ? peer.cap_permitted : 0;
  if (uint64_t missing = t.cap_permitted & ~peer_permitted) {
    std::string why = peer.caps_known || peer.uid != 0 ? "" : fmt::format(" (the connecting root process's capabilities could not be read: {})", peer.caps_unknown_reason);
    return {false, fmt::format("process {} holds capabilities (permitted {:#x}) that the connecting uid {} does not{}: {}", pid, missing,
                               peer.uid, why, root_only)};
  }
  // 4. get_dumpable() == SUID_DUMP_USER.
  if (!t.dumpable)
    return {false, fmt::format("process {} is not dumpable (started setuid or with file capabilities, or prctl(PR_SET_DUMPABLE, 0)): {}", pid,
                               root_only)};
  return {true, ""};
}

Credentials own_credentials() {
  Credentials c;
  ::getresuid(&c.ruid, &c.euid, &c.suid);
  ::getresgid(&c.rgid, &c.egid, &c.sgid);
  c.dumpable = ::prctl(PR_GET_DUMPABLE) == 1;
  // Capabilities and credentials are per thread: take every thread's (the host may have changed
  // one thread's with a raw syscall).
  bool any = false;
  if (DIR* d = ::opendir("/proc/self/task")) {
    while (dirent* e = ::readdir(d)) {
      if (e->d_name[0] == '.') continue;
      UniqueFd f(::open(fmt::format("/proc/self/task/{}/status", e->d_name).c_str(), O_RDONLY | O_CLOEXEC));
      std::string text;
      if (!f.valid() || !read_all(f.get(), &text)) continue;
      StatusIds s = parse_status(text);
      if (s.found != 0xf) continue;
      any = true;
      c.cap_permitted |= s.cap_permitted;
      c.cap_effective |= s.cap_effective;
      if (s.uid[0] != c.ruid || s.uid[1] != c.euid || s.uid[2] != c.suid || s.gid[0] != c.rgid || s.gid[1] != c.egid || s.gid[2] != c.sgid)
        c.uniform = false;
    }
    ::closedir(d);
  }
  if (!any && !own_thread_caps(&c.cap_permitted, &c.cap_effective)) c.cap_permitted = c.cap_effective = ~uint64_t{0};  // unknown: assume all
  return c;
}

Result<PeerCredentials> peer_credentials(int fd) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return make_errno_error(ErrorKind::permission, "SO_PEERCRED");
  PeerCredentials p;
  p.pid = cred.pid;
  p.uid = cred.uid;
  p.gid = cred.gid;
  // 1. Capabilities are read now, not at connect() time, so they are trusted only for a peer
  //    that was root when it connected. A non-root peer could connect, queue a request, then
  //    exec a setuid or file-capability program that inherits the socket: its capabilities now
  //    would vouch for the request it wrote before. A root peer gains nothing that way.
  if (p.uid != 0) return p;
  pid_t pid = cred.pid;
  UniqueFd pidfd;
  int raw = -1;
  len = sizeof raw;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &raw, &len) == 0) {
    pidfd.reset(raw);
    pid = pidfd_pid(raw);
  } else if (errno != ENOPROTOOPT) {
    p.caps_unknown_reason = fmt::format("SO_PEERPIDFD: {}", std::strerror(errno));
    return p;
  }
  if (pid <= 0) {
    p.caps_unknown_reason = pid < 0 ? "it exited" : "it is not visible in this pid namespace";
    return p;
  }
  // 2. Open, then check the pidfd is still alive (pidfd_send_signal with signal 0: ESRCH once it
  //    exited; EPERM means alive but not ours to signal), then read: the pid was not reused
  //    between reading fdinfo and opening the file, and the open file stays bound to that process.
  UniqueFd status(::open(fmt::format("/proc/{}/status", pid).c_str(), O_RDONLY | O_CLOEXEC));
  if (!status.valid()) {
    p.caps_unknown_reason = fmt::format("/proc/{}/status: {}", pid, std::strerror(errno));
    return p;
  }
  if (pidfd.valid() && ::syscall(SYS_pidfd_send_signal, pidfd.get(), 0, nullptr, 0) != 0 && errno == ESRCH) {
    p.caps_unknown_reason = "it exited";
    return p;
  }
  std::string text;
  StatusIds s;
  if (read_all(status.get(), &text)) s = parse_status(text);
  if (!(s.found & 0xc)) {
    p.caps_unknown_reason = fmt::format("no capability lines in /proc/{}/status", pid);
    return p;
  }
  p.caps_known = true;
  p.cap_permitted = s.cap_permitted;
  p.cap_effective = s.cap_effective;
  return p;
}

Result<void> admit_peer(int fd) {
  LG_TRY(auto peer, peer_credentials(fd));
  AccessDecision d = may_control(peer, own_credentials(), ::getpid());
  if (!d.allowed) return make_error(ErrorKind::permission, "{}", d.reason);
  return ok_result();
}

namespace {

bool send_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

bool send_line(int fd, const nlohmann::json& j) { return send_all(fd, j.dump() + "\n"); }

}  // namespace

void serve_connection(int fd, Agent& agent) {
  if (auto admitted = admit_peer(fd); !admitted) {
    // Sent at once (a client may just read), and kept open until the client's first request
    // arrives (bounded), so that a client that sends before it reads gets this line rather
    // than EPIPE.
    send_line(fd, Agent::error_response(admitted.error()));
    pollfd p{fd, POLLIN, 0};
    ::poll(&p, 1, 1000);
    return;
  }
  std::string buf;
  char chunk[65536];
  for (;;) {
    size_t nl;
    while ((nl = buf.find('\n')) != std::string::npos) {
      std::string line = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      if (line.empty()) continue;
      if (!send_all(fd, agent.handle_line(line) + "\n")) return;
    }
    if (buf.size() > kMaxRequestLine) {
      send_line(fd, Agent::error_response(make_error(ErrorKind::invalid_argument, "request longer than {} bytes", kMaxRequestLine)));
      return;
    }
    ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    buf.append(chunk, static_cast<size_t>(n));
  }
}

void serve_forever(int listen_fd, Agent& agent) {
  for (;;) {
    int c = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) {
      if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        if (errno != EINTR && errno != ECONNABORTED) ::usleep(100000);  // out of resources: do not spin
        continue;
      }
      return;
    }
    UniqueFd conn(c);
    try {
      serve_connection(conn.get(), agent);
    } catch (...) {
      agent.disable("internal error while serving a connection");
    }
    agent.connection_closed();  // a controller that died mid-transition leaves nothing open
  }
}

}  // namespace lg::agent
