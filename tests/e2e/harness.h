// E2E test harness: start a target program with pipes on stdin/stdout, talk to it line by line,
// run the livegraft CLI and capture its output, and kill/reap everything at the end.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

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
  pid_t pid_ = -1;
  int in_ = -1, out_ = -1;
  std::string buffered_;
  bool reaped_ = false;
  int status_ = 0;
};

struct CliRun {
  int exit_code = -1;
  std::string out, err;
  nlohmann::json json;  // parsed stdout when it is JSON, else null
};

// Runs `livegraft ARGS...` to completion (with a generous timeout), optionally as [uid].
CliRun livegraft(const std::vector<std::string>& args, int as_uid = -1);

}  // namespace lg::e2e
