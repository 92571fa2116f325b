#include "controller/agent_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <thread>

#include "common/proc_maps.h"

namespace lg {

namespace {

constexpr std::chrono::seconds kReplyTimeout{60};

ErrorKind kind_from_name(const std::string& name) {
  for (auto k : {ErrorKind::invalid_argument, ErrorKind::not_found, ErrorKind::permission, ErrorKind::busy,
                 ErrorKind::bad_patch, ErrorKind::unsupported, ErrorKind::mismatch, ErrorKind::unsafe,
                 ErrorKind::timeout, ErrorKind::thread_died, ErrorKind::io, ErrorKind::agent, ErrorKind::internal})
    if (name == to_string(k)) return k;
  return ErrorKind::agent;
}

Result<uid_t> process_real_uid(pid_t pid) {
  LG_TRY(auto status, read_text_file(fmt::format("/proc/{}/status", pid)));
  auto pos = status.find("\nUid:");
  if (pos == std::string::npos) return make_error(ErrorKind::io, "no Uid line in /proc/{}/status", pid);
  return static_cast<uid_t>(std::strtoul(status.c_str() + pos + 5, nullptr, 10));
}

}  // namespace

Result<std::string> agent_socket_path(pid_t pid) {
  auto uid = process_real_uid(pid);
  if (!uid) {
    if (uid.error().err == ENOENT) return make_error(ErrorKind::not_found, "no process with pid {}", pid);
    return uid.error();
  }
  return fmt::format("/tmp/livegraft-{}/agent-{}.sock", *uid, pid);
}

Result<AgentClient> AgentClient::connect(pid_t pid) {
  LG_TRY(auto path, agent_socket_path(pid));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) return make_error(ErrorKind::internal, "socket path too long: {}", path);
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  // Only trust a socket in a directory that no one but the target's owner (or root) controls:
  // otherwise another user could pose as the agent and dictate code writes.
  auto dir = path.substr(0, path.rfind('/'));
  struct stat st {};
  if (::lstat(dir.c_str(), &st) == 0) {
    LG_TRY(auto owner, process_real_uid(pid));
    if (!S_ISDIR(st.st_mode) || (st.st_uid != owner && st.st_uid != 0) || (st.st_mode & 077) != 0)
      return make_error(ErrorKind::permission,
                        "refusing the agent socket directory {}: it must be a directory of uid {} (or root) with mode "
                        "0700 (it is uid {}, mode {:o})",
                        dir, owner, st.st_uid, st.st_mode & 07777);
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return make_errno_error(ErrorKind::io, "socket");
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    int e = errno;
    if (e == ENOENT || e == ECONNREFUSED)
      return Error(ErrorKind::not_found, fmt::format("no livegraft agent in process {} ({})", pid, path), e);
    if (e == EACCES || e == EPERM)
      return Error(ErrorKind::permission,
                   fmt::format("may not connect to the agent of process {} ({}): {}", pid, path, std::strerror(e)), e,
                   "run livegraft as the process's owner or as root");
    return Error(ErrorKind::io, fmt::format("connect {}: {}", path, std::strerror(e)), e);
  }
  // The listening end must belong to the target process itself.
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
    return make_errno_error(ErrorKind::io, "SO_PEERCRED on {}", path);
  if (cred.pid != pid)
    return make_error(ErrorKind::permission, "the socket {} is served by process {}, not by process {}: refusing it",
                      path, cred.pid, pid);
  return AgentClient(pid, std::move(fd));
}

Result<AgentClient> AgentClient::connect_with_retry(pid_t pid, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto c = connect(pid);
    if (c.ok() || c.error().kind != ErrorKind::not_found || std::chrono::steady_clock::now() >= deadline) return c;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

Result<nlohmann::json> AgentClient::request(const nlohmann::json& req, int fd) {
  std::string line = req.dump() + "\n";
  for (size_t off = 0; off < line.size();) {
    ssize_t n;
    if (off == 0 && fd >= 0) {
      // The descriptor rides on the first chunk; the agent takes it for this request.
      iovec iov{line.data(), line.size()};
      alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
      msghdr msg{};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = control;
      msg.msg_controllen = sizeof control;
      cmsghdr* c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int));
      std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
      n = ::sendmsg(fd_.get(), &msg, MSG_NOSIGNAL);
    } else {
      n = ::send(fd_.get(), line.data() + off, line.size() - off, MSG_NOSIGNAL);
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      return make_errno_error(ErrorKind::agent, "sending to the agent of process {}", pid_);
    }
    off += static_cast<size_t>(n);
  }
  auto deadline = std::chrono::steady_clock::now() + kReplyTimeout;
  size_t nl;
  while ((nl = buffer_.find('\n')) == std::string::npos) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0)
      return make_error(ErrorKind::timeout, "the agent of process {} did not answer '{}' within {}s", pid_,
                        req.value("op", "?"), kReplyTimeout.count());
    pollfd p{fd_.get(), POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno != EINTR) return make_errno_error(ErrorKind::agent, "poll");
    if (r <= 0) continue;
    char buf[65536];
    ssize_t n = ::recv(fd_.get(), buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return make_errno_error(ErrorKind::agent, "reading from the agent of process {}", pid_);
    }
    if (n == 0) return make_error(ErrorKind::agent, "the agent of process {} closed the connection", pid_);
    buffer_.append(buf, static_cast<size_t>(n));
  }
  std::string reply = buffer_.substr(0, nl);
  buffer_.erase(0, nl + 1);
  nlohmann::json j = nlohmann::json::parse(reply, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return make_error(ErrorKind::agent, "the agent of process {} sent an unreadable reply", pid_);
  if (!j.value("ok", false)) {
    return Error(kind_from_name(j.value("kind", "agent")),
                 fmt::format("agent in process {}: {}", pid_, j.value("error", "unknown error")));
  }
  return j;
}

}  // namespace lg
