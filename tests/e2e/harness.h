// E2E test harness: start a target program with pipes on stdin/stdout, talk to it line by line,
// run the livegraft CLI and capture its output, and kill/reap everything at the end.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "child_process.h"  // tests/support

namespace lg::e2e {

std::string binary_dir();                      // the CMake build directory
std::string target_path(const std::string& name);  // build/targets/<name>
std::string patch_path(const std::string& name);   // build/patches/<name>.o
std::string livegraft_path();

class Target {
 public:
  // Starts [path] [args...]; waits for its "ready" line. Extra environment entries "K=V".
  explicit Target(const std::string& path, std::vector<std::string> args = {}, std::vector<std::string> env = {});
  ~Target();  // kills (SIGKILL) and reaps the process
  Target(const Target&) = delete;
  Target& operator=(const Target&) = delete;

  pid_t pid() const { return pid_; }
  void send(const std::string& line);
  // The next line of output ("" + test failure on timeout or EOF).
  std::string read_line(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  std::string ask(const std::string& line) {
    send(line);
    return read_line();
  }
  // Whether the process is still alive (not exited, not a zombie).
  bool alive();
  // /proc/PID/maps now.
  std::string maps() const;
  // Lets the process exit ("q"), returning its exit status (-1 on timeout).
  int quit();

 private:
  std::unique_ptr<test::ChildProcess> child_;
  pid_t pid_ = -1;
};

struct CliRun {
  int exit_code = -1;
  std::string out, err;
  nlohmann::json json;  // parsed stdout when it is JSON, else null
};

// Runs `livegraft ARGS...` to completion (with a generous timeout), optionally as [uid].
CliRun livegraft(const std::vector<std::string>& args, int as_uid = -1);
// Runs a shell command; its exit code (-1 when it did not exit), stdout and stderr in *out.
int shell(const std::string& cmd, std::string* out = nullptr);

// A directory of the test's own, /tmp/lg-PREFIX-XXXXXX, removed with its contents.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Copies the source tree tests/programs/NAME (with its Makefile) to DIR/src and builds it with
// make, as a project `livegraft build` rebuilds; returns DIR/src ("" and a test failure when
// the copy or the build fails).
std::string build_program_tree(const std::string& name, const std::string& dir);
// Same with extra environment entries "K=V" (LIVEGRAFT_KILL_AT=3, ...).
CliRun livegraft_env(const std::vector<std::string>& args, const std::vector<std::string>& env);

// A livegraft run in the background: the test reads its stderr while it runs (to act at a
// step it announces), then collects it. The destructor kills (SIGKILL) and reaps it.
class CliProcess {
 public:
  explicit CliProcess(const std::vector<std::string>& args, const std::vector<std::string>& env = {},
                      int as_uid = -1);
  ~CliProcess();
  CliProcess(const CliProcess&) = delete;
  CliProcess& operator=(const CliProcess&) = delete;

  pid_t pid() const { return child_.pid(); }
  // Reads stderr until it holds [text]; false (and a test failure) on timeout or exit.
  bool wait_for_stderr(const std::string& text, std::chrono::milliseconds timeout = std::chrono::seconds(30));
  // Waits for the exit (SIGKILL after [timeout]) and returns everything it printed.
  CliRun finish(std::chrono::milliseconds timeout = std::chrono::seconds(120));

 private:
  test::ChildProcess child_;
};

// The kill points a run reached, in order, from its LIVEGRAFT_KILL_TRACE=1 stderr.
std::vector<std::string> kill_points_of(const std::string& stderr_text);

// Waits until some thread of [pid] other than the main one sits in one of [syscalls]
// (/proc/PID/task/TID/syscall): a deterministic "the thread is now blocked inside" signal.
bool wait_for_thread_in_syscall(pid_t pid, const std::vector<long>& syscalls,
                                std::chrono::milliseconds timeout = std::chrono::seconds(10));

}  // namespace lg::e2e
