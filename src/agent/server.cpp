#include "agent/server.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <poll.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace lg::agent {

// The transport's facts are the protocol module's (shared with the controller).
std::string socket_dir(uid_t uid) { return protocol::socket_dir(uid); }

std::string socket_path(uid_t uid, pid_t pid) { return protocol::socket_path(uid, pid); }

uid_t socket_uid(uid_t real_uid, uid_t effective_uid, uid_t saved_uid) {
  return protocol::socket_uid(real_uid, effective_uid, saved_uid);
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

// ---- Serving: one control thread polls the listening socket and up to kMaxConnections
// connections; an executor thread runs the agent's requests one at a time.

namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kMaxConnections = 16;
constexpr auto kRefusedLinger = std::chrono::seconds(1);

// The only receive call of a connection: appends what [fd] has now to [buf]. > 0 bytes
// appended, 0 end of stream, -1 error, -2 nothing available. A descriptor sent with SCM_RIGHTS
// (the patch file of a "load") lands in [passed] with [passed_at], the offset in [buf] of the
// first byte it came with: it belongs to the request line holding that byte. One at a time:
// any other descriptor is closed at once.
ssize_t receive_some(int fd, std::string& buf, UniqueFd& passed, size_t& passed_at) {
  char chunk[65536];
  for (;;) {
    iovec iov{chunk, sizeof chunk};
    alignas(cmsghdr) char control[CMSG_SPACE(4 * sizeof(int))];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n = ::recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return -2;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); n >= 0 && c; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int received;
        std::memcpy(&received, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        if (!passed.valid()) {
          passed.reset(received);
          passed_at = buf.size();
        } else {
          ::close(received);
        }
      }
    }
    if (n > 0) buf.append(chunk, static_cast<size_t>(n));
    return n;
  }
}

// Sends what the socket takes now from the front of [out]; false when the connection broke.
bool send_some(int fd, std::string& out) {
  while (!out.empty()) {
    ssize_t n = ::send(fd, out.data(), out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    if (n <= 0) return false;
    out.erase(0, static_cast<size_t>(n));
  }
  return true;
}

std::string error_line(const Error& e) { return Agent::error_response(e).dump() + "\n"; }

// One request line of a connection, or (closed) the end of the connection that owned the open
// transition: Agent::connection_closed() settles it.
struct Job {
  uint64_t conn = 0;
  std::string line;
  bool closed = false;
  bool read_only = false;  // hello/status: changes nothing, publishes no snapshot
  UniqueFd fd;             // the descriptor that came with the line (SCM_RIGHTS), if any
};

// hello and status leave the agent's state as it was.
bool is_read_only(const std::string& line) {
  auto op = protocol::peek_op(line);
  return op == protocol::Op::hello || op == protocol::Op::status;
}

struct JobResult {
  uint64_t conn = 0;
  std::string response;
  bool closed = false;
  bool transition_open = false;
};

JobResult execute(Agent& agent, const Job& job) noexcept {
  JobResult r;
  try {
    r.conn = job.conn;
    r.closed = job.closed;
    if (job.closed) agent.connection_closed();
    else r.response = agent.handle_line(job.line, job.fd.get());
    r.transition_open = agent.transition_open();
  } catch (...) {
    r.response = R"({"ok":false,"error":"the agent could not build its response","kind":"agent"})";
  }
  return r;
}

// Runs jobs on a thread of its own (named livegraft-exec, every signal blocked as it inherits
// the control thread's mask), so that a job that never returns — a patch constructor or
// destructor that blocks — leaves the control thread serving. Never destroyed: its thread may
// stay blocked inside the agent for the life of the process.
class Executor {
 public:
  explicit Executor(Agent& agent) : agent_(agent) {}

  bool start() {
    int p[2];
    if (::pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) return false;
    wake_r_.reset(p[0]);
    wake_w_.reset(p[1]);
    try {
      std::thread([this] { loop(); }).detach();
    } catch (...) {
      return false;
    }
    return true;
  }
  int wake_fd() const { return wake_r_.get(); }
  void submit(Job job) {
    {
      std::lock_guard lock(mu_);
      job_ = std::move(job);
    }
    cv_.notify_one();
  }
  // The finished job's result, once wake_fd() is readable.
  std::optional<JobResult> take() {
    char buf[64];
    while (::read(wake_r_.get(), buf, sizeof buf) > 0) {
    }
    std::lock_guard lock(mu_);
    return std::exchange(result_, std::nullopt);
  }

 private:
  void loop() {
    ::pthread_setname_np(::pthread_self(), lg::protocol::kAgentExecThreadName);
    for (;;) {
      Job job;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [this] { return job_.has_value(); });
        job = std::move(*job_);
        job_.reset();
      }
      JobResult r = execute(agent_, job);
      {
        std::lock_guard lock(mu_);
        result_ = std::move(r);
      }
      char c = 1;
      (void)!::write(wake_w_.get(), &c, 1);
    }
  }

  Agent& agent_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<Job> job_;
  std::optional<JobResult> result_;
  UniqueFd wake_r_, wake_w_;
};

struct Connection {
  uint64_t id = 0;
  UniqueFd fd;
  std::string in, out;
  UniqueFd passed;        // a descriptor received with the byte at in[passed_at] (receive_some)
  size_t passed_at = 0;
  bool waiting = false;  // its request is queued or running: take no further line from it
  bool eof = false;      // the peer shut down its sending side
  bool refused = false;  // got its permission error; closed at its first request or at refused_until
  bool close_when_flushed = false;
  Clock::time_point refused_until{};
};

class ControlLoop {
 public:
  ControlLoop(int listen_fd, Agent& agent, const ServeOptions& options)
      : listen_fd_(listen_fd), agent_(agent), options_(options), executor_(new Executor(agent)) {
    threaded_ = executor_->start();
  }

  void run() {
    for (;;) {
      dispatch();
      std::vector<pollfd> fds;
      fds.push_back({conns_.size() < kMaxConnections ? listen_fd_ : -1, POLLIN, 0});
      fds.push_back({threaded_ ? executor_->wake_fd() : -1, POLLIN, 0});
      for (const auto& c : conns_) {
        short ev = c.out.empty() ? 0 : POLLOUT;
        if (!c.waiting && !c.eof && !c.close_when_flushed) ev |= POLLIN;
        // A hung-up peer with nothing to send or read would make poll() return at once forever.
        fds.push_back({ev == 0 && c.eof ? -1 : c.fd.get(), ev, 0});
      }
      int r = ::poll(fds.data(), fds.size(), poll_timeout_ms());
      if (r < 0 && errno != EINTR) return;
      if (r > 0 && fds[1].revents) finish_job();
      check_deadline();
      for (size_t i = 0; r > 0 && i < conns_.size(); ++i) serve_io(conns_[i], fds[i + 2].revents);
      reap();
      if (r > 0 && (fds[0].revents & POLLIN) && !accept_one()) return;
    }
  }

 private:
  int poll_timeout_ms() const {
    std::optional<Clock::time_point> next;
    if (in_flight_ && !wedged_) next = deadline_;
    for (const auto& c : conns_)
      if (c.refused && (!next || c.refused_until < *next)) next = c.refused_until;
    if (!next) return -1;
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(*next - Clock::now()).count();
    return static_cast<int>(std::clamp<long long>(ms + 1, 0, 60000));
  }

  Connection* find(uint64_t id) {
    for (auto& c : conns_)
      if (c.id == id) return &c;
    return nullptr;
  }

  // false: the listening socket is gone (shut down): stop serving.
  bool accept_one() {
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED || errno == EAGAIN) return true;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        ::usleep(100000);  // out of resources: do not spin
        return true;
      }
      return false;
    }
    Connection c;
    c.id = ++last_id_;
    c.fd.reset(fd);
    if (auto admitted = admit_peer(fd); !admitted) {
      // Sent at once (a client may just read) and kept open until the client's first request
      // (at most kRefusedLinger), so a client that writes before it reads gets this line, not EPIPE.
      c.out = error_line(admitted.error());
      c.refused = true;
      c.refused_until = Clock::now() + kRefusedLinger;
    }
    send_some(c.fd.get(), c.out);
    conns_.push_back(std::move(c));
    return true;
  }

  void serve_io(Connection& c, short revents) {
    if (!c.fd.valid()) return;
    if ((revents & POLLOUT) && !send_some(c.fd.get(), c.out)) return drop(c);
    if (!(revents & (POLLIN | POLLHUP | POLLERR))) return;
    if (c.waiting || c.eof || c.close_when_flushed) {
      if (revents & (POLLHUP | POLLERR)) c.eof = true;
      return;
    }
    ssize_t n = receive_some(c.fd.get(), c.in, c.passed, c.passed_at);
    if (n == -1) return drop(c);
    if (n == 0) c.eof = true;
    if (c.refused) {
      if (c.eof || c.in.find('\n') != std::string::npos) c.close_when_flushed = true;
      c.in.clear();
      c.passed.reset();
      return;
    }
    take_line(c);
  }

  // The next request line of [c], queued for the executor.
  void take_line(Connection& c) {
    if (c.waiting || c.refused) return;
    size_t nl;
    while ((nl = c.in.find('\n')) != std::string::npos) {
      std::string line = c.in.substr(0, nl);
      c.in.erase(0, nl + 1);
      UniqueFd mine;
      if (c.passed.valid()) {
        if (c.passed_at <= nl) mine = std::move(c.passed);
        else c.passed_at -= nl + 1;
      }
      if (line.empty()) continue;
      c.waiting = true;
      bool read_only = is_read_only(line);
      pending_.push_back(Job{c.id, std::move(line), false, read_only, std::move(mine)});
      return;
    }
    if (c.in.size() > kMaxRequestLine) {
      c.out += error_line(make_error(ErrorKind::invalid_argument, "request longer than {} bytes", kMaxRequestLine));
      c.in.clear();
      c.passed.reset();
      c.close_when_flushed = true;
    }
  }

  void drop(Connection& c) {
    c.fd.reset();
    c.out.clear();
  }

  // Closes finished connections; the one owning the open transition has it settled.
  void reap() {
    auto now = Clock::now();
    for (auto& c : conns_) {
      if (!c.fd.valid()) continue;
      bool idle = !c.waiting && c.in.find('\n') == std::string::npos;
      if ((c.close_when_flushed && c.out.empty()) || (c.refused && now >= c.refused_until) || (c.eof && idle && c.out.empty()))
        c.fd.reset();
    }
    for (auto it = conns_.begin(); it != conns_.end();) {
      if (it->fd.valid()) {
        ++it;
        continue;
      }
      if (it->id == owner_) connection_gone(it->id);
      it = conns_.erase(it);
    }
  }

  // The controller that opened the transition went away (killed, crashed): settle it.
  void connection_gone(uint64_t id) {
    if (id != owner_) return;
    owner_ = 0;
    pending_.push_back(Job{id, "", true, false});
  }

  void dispatch() {
    if (wedged_) return answer_while_wedged();
    if (in_flight_ || pending_.empty()) return;
    Job job = std::move(pending_.front());
    pending_.pop_front();
    in_flight_ = true;
    in_flight_conn_ = job.conn;
    in_flight_read_only_ = job.read_only;
    deadline_ = Clock::now() + options_.request_timeout;
    if (threaded_) {
      executor_->submit(std::move(job));
    } else {
      complete(execute(agent_, job));
    }
  }

  void finish_job() {
    if (!threaded_) return;
    if (auto r = executor_->take()) complete(*r);
  }

  void complete(const JobResult& r) {
    in_flight_ = false;
    if (wedged_) {
      // The blocked job returned after all; its caller was told it failed. Make the state the
      // registry's own sticky one and serve normally again (everything but hello/status fails).
      agent_.disable(*wedged_);
      wedged_.reset();
      return;
    }
    if (!transition_open_ && r.transition_open) owner_ = r.conn;
    if (!r.transition_open) owner_ = 0;
    transition_open_ = r.transition_open;
    if (r.closed) return;
    if (Connection* c = find(r.conn)) {
      c->out += r.response + "\n";
      c->waiting = false;
      if (!send_some(c->fd.get(), c->out)) drop(*c);
      else take_line(*c);
    } else if (owner_ == r.conn) {
      connection_gone(r.conn);  // it opened a transition and left before the answer
    }
  }

  void check_deadline() {
    if (!in_flight_ || wedged_ || Clock::now() < deadline_) return;
    wedged_ = fmt::format("a request did not finish within {} ms (a patch constructor or destructor that blocks?); "
                          "the agent's executor thread is still inside it",
                          options_.request_timeout.count());
    if (Connection* c = find(in_flight_conn_)) {
      c->out += error_line(make_error(ErrorKind::agent, "the agent is disabled: {}", *wedged_));
      c->waiting = false;
      if (!send_some(c->fd.get(), c->out)) drop(*c);
      else take_line(*c);
    }
  }

  // The executor is blocked: hello and status are answered from the state before the blocked
  // request (Agent::snapshot(), published by that request before it changed anything), with
  // the reason; anything else fails (everything, when the blocked request is a hello/status,
  // which publishes no snapshot).
  void answer_while_wedged() {
    while (!pending_.empty()) {
      Job job = std::move(pending_.front());
      pending_.pop_front();
      if (job.closed) continue;
      Connection* c = find(job.conn);
      if (!c) continue;
      auto op = protocol::peek_op(job.line);
      nlohmann::json resp;
      auto decoded = protocol::decode_request_line(op == protocol::Op::status ? std::string_view(job.line) : "{}");
      if (op == protocol::Op::status && !decoded) {
        resp = Agent::error_response(decoded.error());  // another protocol version, say
      } else if (const Agent::Snapshot* before = in_flight_read_only_ ? nullptr : agent_.snapshot();
                 (op == protocol::Op::hello || op == protocol::Op::status) && before) {
        resp = op == protocol::Op::hello ? before->hello : before->status;
        resp["disabled"] = *wedged_;
      } else {
        resp = Agent::error_response(make_error(ErrorKind::agent, "the agent is disabled: {}", *wedged_));
      }
      c->out += resp.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
      c->waiting = false;
      if (!send_some(c->fd.get(), c->out)) drop(*c);
      else take_line(*c);
    }
  }

  int listen_fd_;
  Agent& agent_;
  ServeOptions options_;
  Executor* executor_;
  bool threaded_ = false;
  std::vector<Connection> conns_;
  std::deque<Job> pending_;
  uint64_t last_id_ = 0;
  uint64_t owner_ = 0;  // the connection whose request opened the transition in progress
  bool transition_open_ = false;
  bool in_flight_ = false;
  uint64_t in_flight_conn_ = 0;
  bool in_flight_read_only_ = false;
  Clock::time_point deadline_{};
  std::optional<std::string> wedged_;
};

}  // namespace

void serve_forever(int listen_fd, Agent& agent, const ServeOptions& options) {
  try {
    ControlLoop(listen_fd, agent, options).run();
  } catch (...) {
    agent.disable("internal error while serving connections");
  }
}

}  // namespace lg::agent
