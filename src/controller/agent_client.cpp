#include "controller/agent_client.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <thread>

#include "common/json_text.h"
#include "common/proc_maps.h"

namespace lg {

namespace {

// The uid whose /tmp/livegraft-<uid> directory the agent of [pid] serves from: as the agent's
// socket_uid() (src/agent/server.cpp): 0 if any of the real/effective/saved uids is 0, else the
// effective or saved uid that differs from the real one, else the real uid.
Result<uid_t> process_socket_uid(pid_t pid) {
  LG_TRY(auto status, read_text_file(fmt::format("/proc/{}/status", pid)));
  auto pos = status.find("\nUid:");
  unsigned long r, e, s;
  if (pos == std::string::npos || std::sscanf(status.c_str() + pos + 5, "%lu %lu %lu", &r, &e, &s) != 3)
    return make_error(ErrorKind::io, "no Uid line in /proc/{}/status", pid);
  return protocol::socket_uid(static_cast<uid_t>(r), static_cast<uid_t>(e), static_cast<uid_t>(s));
}

// Whether an agent serving [uid] could listen in [dir] (as prepare_socket_dir() in
// src/agent/server.cpp decides): "" when it could, else why not.
std::string why_unusable(const std::string& dir, uid_t uid) {
  struct stat st {};
  if (::lstat(dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) return fmt::format("{} is not a directory", dir);
    if (st.st_uid != uid) return fmt::format("{} is owned by uid {}, not {} (another user created it first?)", dir, st.st_uid, uid);
    if (st.st_mode & 077) return fmt::format("{} has mode {:o}, open to group or others", dir, st.st_mode & 07777);
    return "";
  }
  // Absent: the agent creates it if it may create entries in the parent (its own directory, or
  // a sticky world-writable one such as /tmp).
  if (dir == protocol::root_made_socket_dir(uid)) return fmt::format("{} does not exist (only root can create it)", dir);
  std::string parent = dir.substr(0, dir.rfind('/'));
  if (::lstat(parent.c_str(), &st) != 0) {
    if (parent.rfind("/run/user/", 0) == 0) return fmt::format("{} does not exist (uid {} has no login session)", parent, uid);
    return fmt::format("{} does not exist", parent);
  }
  if (S_ISDIR(st.st_mode) && (st.st_uid == uid || ((st.st_mode & S_ISVTX) && (st.st_mode & S_IWOTH)))) return "";
  return fmt::format("{} does not exist and uid {} cannot create it", dir, uid);
}

// Why no agent serving [uid] could listen anywhere; nullopt when some directory is usable.
std::optional<std::string> no_usable_socket_dir(uid_t uid) {
  std::string why;
  for (const std::string& dir : protocol::socket_dirs(uid)) {
    std::string w = why_unusable(dir, uid);
    if (w.empty()) return std::nullopt;
    why += (why.empty() ? "" : "; ") + w;
  }
  return why;
}

std::string no_socket_dir_hint(uid_t uid) {
  return fmt::format("run this command once as root (it creates {0}, owned by uid {1}), or as root: install -d -m 0700 -o {1} {0}; "
                     "or have root remove the directory another user made, or give uid {1} a login session "
                     "(loginctl enable-linger makes /run/user/{1})",
                     protocol::root_made_socket_dir(uid), uid);
}

// As root: /run/livegraft (root's, 0755) and /run/livegraft/<uid> (uid's, 0700).
Result<void> make_root_made_socket_dir(uid_t uid) {
  const std::string dir = protocol::root_made_socket_dir(uid);
  const std::string parent = dir.substr(0, dir.rfind('/'));
  if (::mkdir(parent.c_str(), 0755) != 0 && errno != EEXIST) return make_errno_error(ErrorKind::io, "mkdir {}", parent);
  struct stat st {};
  if (::lstat(parent.c_str(), &st) != 0) return make_errno_error(ErrorKind::io, "stat {}", parent);
  if (!S_ISDIR(st.st_mode) || st.st_uid != 0 || (st.st_mode & 022))
    return make_error(ErrorKind::permission, "{} must be a directory of root not writable by group or others (uid {}, mode {:o})", parent,
                      st.st_uid, st.st_mode & 07777);
  if (::mkdir(dir.c_str(), 0700) != 0) return make_errno_error(ErrorKind::io, "mkdir {}", dir);
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid() || ::fchown(fd.get(), uid, static_cast<gid_t>(-1)) != 0 || ::fchmod(fd.get(), 0700) != 0) {
    auto e = make_errno_error(ErrorKind::io, "making {} uid {}'s", dir, uid);
    ::rmdir(dir.c_str());
    return e;
  }
  return ok_result();
}

}  // namespace

Result<void> prepare_agent_socket_dir(pid_t pid) {
  auto uid = process_socket_uid(pid);
  if (!uid) return ok_result();  // the injection reports a vanished process itself
  auto why = no_usable_socket_dir(*uid);
  if (!why) return ok_result();
  if (::geteuid() == 0 && *uid != 0) {
    LG_TRY_VOID(make_root_made_socket_dir(*uid));
    if (!no_usable_socket_dir(*uid)) return ok_result();
  }
  return Error(ErrorKind::permission,
               fmt::format("the agent of process {} could not serve from any directory, so it is not injected: {}", pid, *why), 0,
               no_socket_dir_hint(*uid));
}

Result<std::string> agent_socket_path(pid_t pid) {
  auto uid = process_socket_uid(pid);
  if (!uid) {
    if (uid.error().err == ENOENT) return make_error(ErrorKind::not_found, "no process with pid {}", pid);
    return uid.error();
  }
  // The first directory of protocol::socket_dirs() that we trust and that holds the socket. Only
  // a directory no one but the target's owner (or root) controls is trusted: otherwise another
  // user could pose as the agent and dictate code writes (the agent passes over such a
  // directory too, and listens in the next one).
  std::string passed_over;
  for (const std::string& dir : protocol::socket_dirs(*uid)) {
    struct stat st {};
    if (::lstat(dir.c_str(), &st) != 0) continue;
    if (!S_ISDIR(st.st_mode) || (st.st_uid != *uid && st.st_uid != 0) || (st.st_mode & 077) != 0) {
      passed_over += fmt::format(" (passed over {}: it must be a directory of uid {} or root with mode 0700; it is uid {}, mode {:o})",
                                 dir, *uid, st.st_uid, st.st_mode & 07777);
      continue;
    }
    std::string path = protocol::socket_path_in(dir, pid);
    // A directory we may not search (root's, for a setuid-root target) is answered by connect's
    // own permission error, not passed over as if the agent were absent.
    if (::lstat(path.c_str(), &st) == 0 || errno != ENOENT) return path;
  }
  // No agent can be serving (it would have made or used one of them): not "no agent", but why
  // none could be reached, and what to do.
  if (auto why = no_usable_socket_dir(*uid))
    return Error(ErrorKind::permission,
                 fmt::format("no livegraft agent reachable in process {}: there is no directory an agent of uid {} could serve from: {}", pid, *uid, *why),
                 0, no_socket_dir_hint(*uid));
  return make_error(ErrorKind::not_found, "no livegraft agent in process {} ({}){}", pid,
                    protocol::socket_path(*uid, pid), passed_over);
}

Result<AgentClient> AgentClient::connect(pid_t pid, std::chrono::milliseconds timeout) {
  LG_TRY(auto path, agent_socket_path(pid));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) return make_error(ErrorKind::internal, "socket path too long: {}", path);
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return make_errno_error(ErrorKind::io, "socket");
  // A connect to a listening AF_UNIX socket whose backlog is full waits for SO_SNDTIMEO
  // (net/unix/af_unix.c, unix_stream_connect); sends are bounded by it too.
  timeval tv{};
  auto ms = std::max<long>(1, static_cast<long>(timeout.count()));
  tv.tv_sec = ms / 1000;
  tv.tv_usec = (ms % 1000) * 1000;
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0)
    return make_errno_error(ErrorKind::io, "SO_SNDTIMEO");
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    int e = errno;
    if (e == EAGAIN || e == EWOULDBLOCK)
      return Error(ErrorKind::timeout,
                   fmt::format("the agent of process {} did not accept a connection within {} ms ({})", pid,
                               timeout.count(), path),
                   e, "the process may be stopped or too busy; raise --agent-timeout to wait longer");
    if (e == ENOENT || e == ECONNREFUSED)
      return Error(ErrorKind::not_found, fmt::format("no livegraft agent in process {} ({})", pid, path), e);
    if (e == EACCES || e == EPERM)
      return Error(ErrorKind::permission,
                   fmt::format("may not connect to the agent of process {} ({}): {}", pid, path, std::strerror(e)), e,
                   (path.rfind("/tmp/livegraft-0/", 0) == 0 || path.rfind("/run/livegraft-0/", 0) == 0)
                       ? "the process holds root privileges (it is root's, or setuid root): only root may control its agent"
                       : "run livegraft as the process's owner or as root");
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
  return AgentClient(pid, std::move(fd), timeout);
}

Result<AgentClient> AgentClient::connect_with_retry(pid_t pid, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto c = connect(pid, timeout);
    if (c.ok() || c.error().kind != ErrorKind::not_found || std::chrono::steady_clock::now() >= deadline) return c;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

int AgentClient::speaks() {
  static const int version = [] {
    const char* v = std::getenv("LIVEGRAFT_TEST_PROTOCOL_VERSION");
    return v && *v ? std::atoi(v) : protocol::kVersion;
  }();
  return version;
}

Result<nlohmann::json> AgentClient::request(const nlohmann::json& req, int fd) {
  try {
    if (req.is_object() && !req.contains("v")) {
      nlohmann::json versioned = req;
      versioned["v"] = speaks();
      return request_unchecked(versioned, fd);
    }
    return request_unchecked(req, fd);
  } catch (const std::exception& e) {
    return make_error(ErrorKind::internal, "talking to the agent of process {}: {}", pid_, printable(e.what()));
  }
}

Result<nlohmann::json> AgentClient::send(const protocol::Request& req, int fd) {
  try {
    return request_unchecked(protocol::encode_request(req, speaks()), fd);
  } catch (const std::exception& e) {
    return make_error(ErrorKind::internal, "talking to the agent of process {}: {}", pid_, printable(e.what()));
  }
}

Error AgentClient::unusable_reply(protocol::Op op, const Error& e) const {
  return Error(ErrorKind::agent, fmt::format("the agent of process {} sent a reply livegraft cannot use to '{}': {}", pid_,
                                             protocol::to_string(op), e.message));
}

Result<nlohmann::json> AgentClient::request_unchecked(const nlohmann::json& req, int fd) {
  // An agent of protocol 1 acts on any request: learn its version first (hello is answered by
  // every version) before sending one that changes something.
  if (!version_known_) {
    auto op = req.contains("op") && req["op"].is_string() ? protocol::op_from_string(req["op"].get<std::string>()) : std::nullopt;
    if (op != protocol::Op::hello && op != protocol::Op::status)
      LG_TRY_VOID(exchange(protocol::encode_request(protocol::HelloRequest{}, speaks()), -1));
  }
  return exchange(req, fd);
}

Result<nlohmann::json> AgentClient::exchange(const nlohmann::json& req, int fd) {
  const std::string op = req.contains("op") && req["op"].is_string() ? req["op"].get<std::string>() : "?";
  // The agent would read a replaced string as another name or path: refuse instead.
  if (auto bad = find_invalid_utf8(req))
    return make_error(ErrorKind::invalid_argument,
                      "'{}' is not valid UTF-8 (shown escaped); the agent protocol carries only UTF-8 text", *bad);
  if (!dropped_.empty())
    return make_error(ErrorKind::agent, "cannot send '{}' to the agent of process {}: {}", op, pid_, dropped_);
  std::string line = dump_json(req) + "\n";
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  auto no_answer = [&] {
    dropped_ = fmt::format("the connection was closed after '{}' timed out", op);
    fd_.reset();
    return Error(ErrorKind::timeout,
                 fmt::format("the agent of process {} did not answer '{}' within {} ms", pid_, op, timeout_.count()),
                 0, "the process may be stopped (SIGSTOP) or the agent stuck; raise --agent-timeout to wait longer");
  };
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
      if (errno == EAGAIN || errno == EWOULDBLOCK) return no_answer();  // SO_SNDTIMEO ran out
      return make_errno_error(ErrorKind::agent, "sending to the agent of process {}", pid_);
    }
    off += static_cast<size_t>(n);
  }
  size_t nl;
  while ((nl = buffer_.find('\n')) == std::string::npos) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return no_answer();
    pollfd p{fd_.get(), POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(std::min<long>(left.count(), INT32_MAX)));
    if (r < 0 && errno != EINTR) return make_errno_error(ErrorKind::agent, "poll");
    if (r <= 0) continue;
    char buf[65536];
    ssize_t n = ::recv(fd_.get(), buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      return make_errno_error(ErrorKind::agent, "reading from the agent of process {}", pid_);
    }
    if (n == 0) {
      // The agent closes only when its process dies: say so rather than blame the agent.
      if (::kill(pid_, 0) != 0 && errno == ESRCH)
        return make_error(ErrorKind::thread_died, "process {} died while its agent handled '{}'", pid_, op);
      return make_error(ErrorKind::agent, "the agent of process {} closed the connection during '{}'", pid_, op);
    }
    buffer_.append(buf, static_cast<size_t>(n));
  }
  std::string reply = buffer_.substr(0, nl);
  buffer_.erase(0, nl + 1);
  nlohmann::json j = parse_json(reply);
  if (j.is_discarded() || !j.is_object())
    return make_error(ErrorKind::agent, "the agent of process {} sent an unreadable reply to '{}'", pid_, op);
  // The version first: a reply of another protocol may mean anything.
  if (auto v = protocol::response_version(j); v != speaks()) {
    std::string theirs = v ? std::to_string(*v) : "1";
    if (!v && j.contains("protocol") && j["protocol"].is_number_integer()) theirs = std::to_string(j["protocol"].get<int64_t>());
    return Error(ErrorKind::version,
                 fmt::format("agent in process {} speaks protocol {}, this livegraft speaks {}: it was injected by "
                             "another version of livegraft",
                             pid_, theirs, speaks()),
                 0,
                 "use the livegraft that injected it (its patches stay as they are), or restart the process so that "
                 "this livegraft injects its own agent");
  }
  version_known_ = true;
  if (auto e = protocol::decode_error(j))
    return Error(e->kind, fmt::format("agent in process {}: {}", pid_, e->message));
  return j;
}

}  // namespace lg
