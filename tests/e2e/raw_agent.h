// Talking to an agent socket without livegraft, and serving one without an agent: for the
// tests of the protocol's edges (silent clients, other versions, agents that never answer).
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

#include "protocol/protocol.h"

namespace lg::e2e {

inline sockaddr_un unix_address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  return addr;
}

// One connection to the agent of [pid], a line at a time.
class RawClient {
 public:
  explicit RawClient(pid_t pid) {
    sockaddr_un addr = unix_address(protocol::socket_path(::getuid(), pid));
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;
  ~RawClient() { ::close(fd_); }
  bool connected() const { return connected_; }
  void send(const std::string& s) { (void)!::send(fd_, s.data(), s.size(), MSG_NOSIGNAL); }
  // The answer to [req], or null when none came within [timeout] or it was no JSON.
  nlohmann::json request(const nlohmann::json& req, std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
    send(req.dump() + "\n");
    std::string line;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      pollfd p{fd_, POLLIN, 0};
      char c;
      if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0 || ::read(fd_, &c, 1) != 1) return nullptr;
      if (c == '\n') break;
      line += c;
    }
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    return j.is_discarded() ? nlohmann::json(nullptr) : j;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

// A process that serves the agent's socket itself: it answers every request line with [reply]
// ([delay] after reading it), or never answers when [reply] is empty (accepted, never read).
// What the controllers sent is kept for sent(). Killed and its socket removed at the end.
class FakeAgent {
 public:
  explicit FakeAgent(std::string reply, std::chrono::milliseconds delay = {}) : delay_(delay) {
    const std::string dir = protocol::socket_dir(::getuid());
    ::mkdir(dir.c_str(), 0700);
    struct stat st {};
    private_dir_ = ::stat(dir.c_str(), &st) == 0 && (st.st_mode & 077) == 0;
    int ready[2];
    if (::pipe(ready) != 0 || ::pipe2(log_, O_CLOEXEC) != 0) return;
    pid_ = ::fork();
    if (pid_ == 0) serve(reply, ready[1]);
    ::close(ready[1]);
    ::close(log_[1]);
    char ok = 0;
    listening_ = ::read(ready[0], &ok, 1) == 1 && ok == 'y';
    ::close(ready[0]);
    socket_ = protocol::socket_path(::getuid(), pid_);
  }
  FakeAgent(const FakeAgent&) = delete;
  FakeAgent& operator=(const FakeAgent&) = delete;
  ~FakeAgent() {
    stop();
    ::close(log_[0]);
  }
  bool ready() const { return private_dir_ && listening_; }
  std::string pid() const { return std::to_string(pid_); }
  // Kills the fake; then returns every byte the controllers sent it.
  std::string sent() {
    stop();
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(log_[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
    return out;
  }

 private:
  [[noreturn]] void serve(const std::string& reply, int ready_fd) {
    int s = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr = unix_address(protocol::socket_path(::getuid(), ::getpid()));
    ::unlink(addr.sun_path);
    char ok = ::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 && ::listen(s, 8) == 0 ? 'y' : 'n';
    (void)!::write(ready_fd, &ok, 1);
    const std::string line = reply + "\n";
    for (;;) {
      int c = ::accept(s, nullptr, nullptr);
      if (reply.empty()) continue;  // keep the connection open, never answer
      char buf[4096];
      ssize_t n;
      while ((n = ::read(c, buf, sizeof buf)) > 0) {
        (void)!::write(log_[1], buf, static_cast<size_t>(n));
        for (ssize_t i = 0; i < n; ++i)
          if (buf[i] == '\n') {
            if (delay_.count() > 0) ::poll(nullptr, 0, static_cast<int>(delay_.count()));
            (void)!::write(c, line.data(), line.size());
          }
      }
      ::close(c);
    }
  }
  void stop() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      ::unlink(socket_.c_str());
      pid_ = -1;
    }
  }

  std::chrono::milliseconds delay_;
  pid_t pid_ = -1;
  int log_[2] = {-1, -1};
  bool private_dir_ = false, listening_ = false;
  std::string socket_;
};

}  // namespace lg::e2e
