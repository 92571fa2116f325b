#include "agent/server.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

namespace lg::agent {

std::string socket_dir(uid_t uid) { return fmt::format("/tmp/livegraft-{}", uid); }

std::string socket_path(uid_t uid, pid_t pid) { return fmt::format("{}/agent-{}.sock", socket_dir(uid), pid); }

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

Result<UniqueFd> listen_on(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) return make_error(ErrorKind::invalid_argument, "socket path {} is too long", path);
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return make_errno_error(ErrorKind::io, "socket");
  struct stat st{};
  if (::lstat(path.c_str(), &st) == 0) {
    // 1. Our pid is in the name, so whatever is there belongs to a dead process that had our
    //    pid (or to an earlier agent of this very process, which never serves twice).
    if (!S_ISSOCK(st.st_mode)) return make_error(ErrorKind::permission, "{} exists and is not a socket; refusing to replace it", path);
    if (::unlink(path.c_str()) != 0) return make_errno_error(ErrorKind::io, "unlink stale socket {}", path);
  }
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return make_errno_error(ErrorKind::io, "bind {}", path);
  if (::listen(fd.get(), 8) != 0) return make_errno_error(ErrorKind::io, "listen {}", path);
  return fd;
}

// Like ptrace's rule: root, or a peer that is both the real and the effective owner. A setuid
// program (real uid 1000, effective uid 0) is not controllable by uid 1000.
bool peer_allowed(uid_t peer_uid, uid_t real_uid, uid_t effective_uid) {
  return peer_uid == 0 || (peer_uid == real_uid && peer_uid == effective_uid);
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
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    send_line(fd, Agent::error_response(make_errno_error(ErrorKind::permission, "SO_PEERCRED")));
    return;
  }
  if (!peer_allowed(cred.uid, ::getuid(), ::geteuid())) {
    send_line(fd, Agent::error_response(make_error(ErrorKind::permission, "uid {} may not control process {} (owned by uid {}); run as that user or root",
                                                   cred.uid, ::getpid(), ::getuid())));
    return;
  }
  std::string buf;
  char chunk[65536];
  // A descriptor sent with SCM_RIGHTS (the patch file of a "load") belongs to the request line
  // that holds the first byte it came with: [passed_at] is that byte's offset in [buf].
  UniqueFd passed;
  size_t passed_at = 0;
  for (;;) {
    size_t nl;
    while ((nl = buf.find('\n')) != std::string::npos) {
      std::string line = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      UniqueFd mine;
      if (passed.valid()) {
        if (passed_at <= nl) mine = std::move(passed);
        else passed_at -= nl + 1;
      }
      if (line.empty()) continue;
      if (!send_all(fd, agent.handle_line(line, mine.get()) + "\n")) return;
    }
    if (buf.size() > kMaxRequestLine) {
      send_line(fd, Agent::error_response(make_error(ErrorKind::invalid_argument, "request longer than {} bytes", kMaxRequestLine)));
      return;
    }
    iovec iov{chunk, sizeof chunk};
    alignas(cmsghdr) char control[CMSG_SPACE(4 * sizeof(int))];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int received;
        std::memcpy(&received, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        if (i == 0 && !passed.valid()) {
          passed.reset(received);  // one per request; any other is closed at once
          passed_at = buf.size();
        } else {
          ::close(received);
        }
      }
    }
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
