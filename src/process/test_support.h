// Test support for lg_process tests (header-only, used by tests/unit/process_*_test.cpp only):
// compiling the small target programs of tests/programs/process_*.c at test time, running them
// with their stdin/stdout on pipes, and finding libc functions inside them.
#pragma once

#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "common/proc_maps.h"
#include "common/remote.h"

namespace lg::testing {

// A per-test-binary scratch directory, removed at exit.
inline const std::string& scratch_dir() {
  static std::string dir = [] {
    char tmpl[] = "/tmp/lg-process-test-XXXXXX";
    const char* d = ::mkdtemp(tmpl);
    std::string s = d ? d : "/tmp";
    static struct Cleanup {
      std::string path;
      ~Cleanup() {
        std::error_code ec;
        if (path != "/tmp") std::filesystem::remove_all(path, ec);
      }
    } cleanup{s};
    return s;
  }();
  return dir;
}

// Runs a shell command; returns its exit status (0 on success).
inline int run_command(const std::string& cmd) {
  int st = std::system(cmd.c_str());
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

// Compiles tests/programs/<name>.c (once per test binary); returns the executable's path or ""
// when gcc fails.
inline std::string build_program(const std::string& name, const std::string& extra_flags = "") {
  std::string out = scratch_dir() + "/" + name;
  if (std::filesystem::exists(out)) return out;
  std::string src = std::string(LG_SOURCE_DIR) + "/tests/programs/" + name + ".c";
  std::string cmd = "gcc -O1 -g -pthread -o " + out + " " + src + " " + extra_flags + " 2>&1";
  if (run_command(cmd) != 0) return "";
  return out;
}

// Compiles C source text into a shared library; returns its path or "".
inline std::string build_shared_library(const std::string& name, const std::string& source) {
  std::string src = scratch_dir() + "/" + name + ".c";
  std::string out = scratch_dir() + "/" + name + ".so";
  FILE* f = std::fopen(src.c_str(), "w");
  if (!f) return "";
  std::fputs(source.c_str(), f);
  std::fclose(f);
  if (run_command("gcc -shared -fPIC -O1 -o " + out + " " + src + " 2>&1") != 0) return "";
  return out;
}

// A running target program with stdin and stdout on pipes; killed and reaped on destruction.
class TargetProcess {
 public:
  TargetProcess() = default;
  TargetProcess(const TargetProcess&) = delete;
  TargetProcess& operator=(const TargetProcess&) = delete;
  ~TargetProcess() { kill_and_reap(); }

  bool start(const std::string& path, const std::vector<std::string>& args = {}) {
    int in[2], out[2];
    if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0) return false;
    pid_t pid = ::fork();
    if (pid < 0) return false;
    if (pid == 0) {
      ::dup2(in[0], 0);
      ::dup2(out[1], 1);
      std::vector<char*> argv;
      argv.push_back(const_cast<char*>(path.c_str()));
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv(path.c_str(), argv.data());
      ::_exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    pid_ = pid;
    stdin_fd_ = in[1];
    stdout_fd_ = out[0];
    return true;
  }

  pid_t pid() const { return pid_; }

  bool write_stdin(const std::string& s) { return ::write(stdin_fd_, s.data(), s.size()) == static_cast<ssize_t>(s.size()); }

  // Reads lines until one satisfies [pred]; returns it, or "" on EOF or after [timeout] (a hang
  // guard, not a measurement).
  std::string wait_line(const std::function<bool(const std::string&)>& pred,
                        std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto nl = buffer_.find('\n');
      while (nl != std::string::npos) {
        std::string line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        lines_.push_back(line);
        if (pred(line)) return line;
        nl = buffer_.find('\n');
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return "";
      pollfd p{stdout_fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char buf[4096];
      ssize_t n = ::read(stdout_fd_, buf, sizeof buf);
      if (n <= 0) return "";
      buffer_.append(buf, static_cast<size_t>(n));
    }
  }
  std::string wait_prefix(const std::string& prefix, std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
    return wait_line([&](const std::string& l) { return l.rfind(prefix, 0) == 0; }, timeout);
  }
  // Reads and forgets whatever output is already available (lines written before now).
  void drain() {
    for (;;) {
      pollfd p{stdout_fd_, POLLIN, 0};
      if (::poll(&p, 1, 0) <= 0) break;
      char buf[4096];
      ssize_t n = ::read(stdout_fd_, buf, sizeof buf);
      if (n <= 0) break;
    }
    buffer_.clear();
  }
  // Every line read so far.
  const std::vector<std::string>& lines() const { return lines_; }

  void kill_and_reap() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int st;
      ::waitpid(pid_, &st, __WALL);
      pid_ = -1;
    }
    if (stdin_fd_ >= 0) ::close(stdin_fd_);
    if (stdout_fd_ >= 0) ::close(stdout_fd_);
    stdin_fd_ = stdout_fd_ = -1;
  }

 private:
  pid_t pid_ = -1;
  int stdin_fd_ = -1, stdout_fd_ = -1;
  std::string buffer_;
  std::vector<std::string> lines_;
};

// The lowest mapping of libc.so.6 in [pid].
inline uint64_t libc_base(pid_t pid) {
  auto maps = read_proc_maps(pid);
  if (!maps) return 0;
  uint64_t base = 0;
  for (const auto& m : *maps)
    if (m.path.size() >= 9 && m.path.compare(m.path.size() - 9, 9, "libc.so.6") == 0 && (base == 0 || m.range.lo.value < base))
      base = m.range.lo.value;
  return base;
}

// The address of libc function [name] in process [pid] (same libc file as ours), from our own
// dlsym (which also resolves IFUNCs for this machine) and both processes' libc bases. The
// lookup asks libc's own handle: in a sanitizer build RTLD_DEFAULT finds the sanitizer's
// interceptor in this executable instead.
inline RemoteAddr libc_function_in(pid_t pid, const char* name) {
  void* libc = ::dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
  void* local = libc ? ::dlsym(libc, name) : nullptr;
  if (libc) ::dlclose(libc);
  uint64_t ours = libc_base(::getpid()), theirs = libc_base(pid);
  if (!local || !ours || !theirs) return RemoteAddr();
  return RemoteAddr(theirs + (reinterpret_cast<uint64_t>(local) - ours));
}

// The scheduler state letter of a thread ('t' for a ptrace stop), 0 when gone.
inline char task_state(pid_t pid, pid_t tid) {
  auto text = read_text_file("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/stat");
  if (!text) return 0;
  auto close = text->rfind(')');
  return close == std::string::npos || close + 2 >= text->size() ? 0 : (*text)[close + 2];
}

inline std::vector<pid_t> list_tasks(pid_t pid) {
  std::vector<pid_t> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec))
    out.push_back(static_cast<pid_t>(std::stoi(e.path().filename().string())));
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace lg::testing
