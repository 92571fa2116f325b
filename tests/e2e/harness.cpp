#include "harness.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <gtest/gtest.h>

namespace lg::e2e {

std::string binary_dir() { return LG_BINARY_DIR; }
std::string target_path(const std::string& name) { return binary_dir() + "/targets/" + name; }
std::string patch_path(const std::string& name) { return binary_dir() + "/patches/" + name + ".o"; }
std::string livegraft_path() { return binary_dir() + "/livegraft"; }

Target::Target(const std::string& path, std::vector<std::string> args, std::vector<std::string> env) {
  int in_pipe[2], out_pipe[2];
  if (pipe2(in_pipe, O_CLOEXEC) != 0 || pipe2(out_pipe, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
  pid_ = fork();
  if (pid_ == 0) {
    dup2(in_pipe[0], 0);
    dup2(out_pipe[1], 1);
    std::vector<char*> argv{const_cast<char*>(path.c_str())};
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    for (auto& e : env) putenv(e.data());
    execv(path.c_str(), argv.data());
    _exit(127);
  }
  close(in_pipe[0]);
  close(out_pipe[1]);
  in_ = in_pipe[1];
  out_ = out_pipe[0];
  std::string first = read_line(std::chrono::seconds(20));
  EXPECT_EQ(first, "ready") << "target " << path << " did not start";
}

Target::~Target() {
  if (pid_ > 0 && !reaped_) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  if (in_ >= 0) close(in_);
  if (out_ >= 0) close(out_);
}

void Target::send(const std::string& line) {
  std::string l = line + "\n";
  ASSERT_EQ(write(in_, l.data(), l.size()), static_cast<ssize_t>(l.size()));
}

std::string Target::read_line(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto nl = buffered_.find('\n');
    if (nl != std::string::npos) {
      std::string line = buffered_.substr(0, nl);
      buffered_.erase(0, nl + 1);
      return line;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      ADD_FAILURE() << "timed out reading from target " << pid_;
      return "";
    }
    pollfd p{out_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char buf[4096];
    ssize_t n = read(out_, buf, sizeof buf);
    if (n <= 0) {
      ADD_FAILURE() << "target " << pid_ << " closed its output";
      return "";
    }
    buffered_.append(buf, static_cast<size_t>(n));
  }
}

bool Target::alive() {
  if (reaped_) return false;
  int st;
  pid_t r = waitpid(pid_, &st, WNOHANG);
  if (r == pid_) {
    reaped_ = true;
    status_ = st;
    return false;
  }
  return true;
}

std::string Target::maps() const {
  std::ifstream in("/proc/" + std::to_string(pid_) + "/maps");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int Target::quit() {
  send("q");
  for (int i = 0; i < 1000; ++i) {
    if (!alive()) return WIFEXITED(status_) ? WEXITSTATUS(status_) : 128 + WTERMSIG(status_);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return -1;
}

CliProcess::CliProcess(const std::vector<std::string>& args, const std::vector<std::string>& env, int as_uid) {
  int out_pipe[2], err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
  std::string exe = livegraft_path();
  std::vector<std::string> copy = args, env_copy = env;
  pid_ = fork();
  if (pid_ == 0) {
    dup2(out_pipe[1], 1);
    dup2(err_pipe[1], 2);
    if (as_uid >= 0) {
      if (setresgid(as_uid, as_uid, as_uid) != 0 || setresuid(as_uid, as_uid, as_uid) != 0) _exit(126);
    }
    for (auto& e : env_copy) putenv(e.data());
    std::vector<char*> argv{exe.data()};
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(exe.c_str(), argv.data());
    _exit(127);
  }
  close(out_pipe[1]);
  close(err_pipe[1]);
  out_ = out_pipe[0];
  err_ = err_pipe[0];
}

CliProcess::~CliProcess() {
  if (out_ >= 0) close(out_);
  if (err_ >= 0) close(err_);
  if (pid_ > 0 && !reaped_) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
}

bool CliProcess::pump(std::chrono::milliseconds timeout) {
  pollfd fds[2] = {{out_, POLLIN, 0}, {err_, POLLIN, 0}};
  if (out_ < 0 && err_ < 0) return false;
  if (poll(fds, 2, static_cast<int>(timeout.count())) <= 0) return true;
  for (int i = 0; i < 2; ++i) {
    if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
    char buf[4096];
    ssize_t n = read(fds[i].fd, buf, sizeof buf);
    if (n <= 0) {
      close(fds[i].fd);
      (i == 0 ? out_ : err_) = -1;
    } else {
      (i == 0 ? run_.out : run_.err).append(buf, static_cast<size_t>(n));
    }
  }
  return out_ >= 0 || err_ >= 0;
}

bool CliProcess::wait_for_stderr(const std::string& text, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (run_.err.find(text) == std::string::npos) {
    if (std::chrono::steady_clock::now() >= deadline || !pump(std::chrono::milliseconds(100))) {
      ADD_FAILURE() << "livegraft did not print '" << text << "'; stderr so far: " << run_.err;
      return false;
    }
  }
  return true;
}

CliRun CliProcess::finish(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline && pump(std::chrono::milliseconds(1000))) {
  }
  int st = 0;
  if (out_ >= 0 || err_ >= 0) {
    ADD_FAILURE() << "livegraft did not finish within " << timeout.count() << " ms: killed";
    kill(pid_, SIGKILL);
  }
  waitpid(pid_, &st, 0);
  reaped_ = true;
  run_.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  run_.json = nlohmann::json::parse(run_.out, nullptr, false);
  if (run_.json.is_discarded()) run_.json = nullptr;
  return run_;
}

CliRun livegraft(const std::vector<std::string>& args, int as_uid) { return CliProcess(args, {}, as_uid).finish(); }

CliRun livegraft_env(const std::vector<std::string>& args, const std::vector<std::string>& env) {
  return CliProcess(args, env).finish();
}

std::vector<std::string> kill_points_of(const std::string& stderr_text) {
  std::vector<std::string> names;
  std::istringstream in(stderr_text);
  std::string line;
  const std::string prefix = "livegraft: kill point ";
  while (std::getline(in, line)) {
    if (line.rfind(prefix, 0) != 0) continue;
    auto space = line.find(' ', prefix.size());
    if (space != std::string::npos) names.push_back(line.substr(space + 1));
  }
  return names;
}

bool wait_for_thread_in_syscall(pid_t pid, const std::vector<long>& syscalls, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string task_dir = "/proc/" + std::to_string(pid) + "/task";
  while (std::chrono::steady_clock::now() < deadline) {
    for (const auto& entry : std::filesystem::directory_iterator(task_dir)) {
      std::string tid = entry.path().filename();
      if (tid == std::to_string(pid)) continue;
      std::ifstream in(entry.path() / "syscall");
      long nr = -1;
      if (in >> nr && std::find(syscalls.begin(), syscalls.end(), nr) != syscalls.end()) return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ADD_FAILURE() << "no thread of " << pid << " entered the expected system call";
  return false;
}

}  // namespace lg::e2e
