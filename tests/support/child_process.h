// Shared test support (tests/support, library lg_test_support): a child process started from a
// test — a target program, the livegraft CLI — with its standard streams on pipes, read with
// deadlines, and killed and reaped at the end. No GoogleTest dependency: every call reports
// failure by its return value, so any test binary can use it.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace lg::test {

struct SpawnOptions {
  std::vector<std::string> env;  // extra environment entries "K=V"
  int as_uid = -1;               // setresgid/setresuid to it before exec (needs root); -1: ours
  bool pipe_stdin = true;        // otherwise inherited
  bool pipe_stdout = true;
  bool pipe_stderr = false;
};

class ChildProcess {
 public:
  enum class Stream { out, err };

  // Starts [path] with [args] (argv[0] is [path]). An exec failure is exit code 127 (126 when
  // the uid change failed). Throws std::runtime_error when pipe() or fork() fails.
  explicit ChildProcess(const std::string& path, const std::vector<std::string>& args = {},
                        const SpawnOptions& options = {});
  ~ChildProcess();  // SIGKILL and reap when it was not reaped; closes the pipes
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }

  bool write_stdin(const std::string& bytes);
  void close_stdin();

  // The next line of [stream] (without its '\n'); nullopt on EOF or after [timeout].
  std::optional<std::string> read_line(Stream stream, std::chrono::milliseconds timeout);
  // Reads every piped stream until [stop] returns true (checked after each read; may be empty)
  // or all of them are closed: true. False after [timeout].
  bool pump_until(const std::function<bool()>& stop, std::chrono::milliseconds timeout);
  // What was read from [stream] and not consumed by read_line.
  const std::string& buffered(Stream stream) const { return stream == Stream::out ? out_buf_ : err_buf_; }

  // Whether it still runs; reaps it when it has exited (a zombie child is not alive).
  bool alive();
  // Waits up to [timeout] for it to exit (reading its pipes meanwhile), then SIGKILLs it.
  // Returns the exit code, or 128 + the signal that ended it.
  int wait_exit(std::chrono::milliseconds timeout);
  // Whether wait_exit had to kill it.
  bool was_killed_by_us() const { return killed_by_us_; }
  void kill_and_reap();

 private:
  bool read_some(int& fd, std::string& buf);  // one read(); false (and fd closed) on EOF
  int exit_code() const;
  pid_t pid_ = -1;
  int in_ = -1, out_ = -1, err_ = -1;
  std::string out_buf_, err_buf_;
  bool reaped_ = false, killed_by_us_ = false;
  int status_ = 0;
};

// The scheduler state letter of a thread (proc(5) "state"; 't' is a ptrace stop), 0 when gone.
char thread_state(pid_t pid, pid_t tid);
// The thread ids of [pid] (/proc/PID/task), empty when it is gone.
std::vector<pid_t> thread_ids(pid_t pid);
// Waits until some thread of [pid] other than the main one sits in one of [syscalls]
// (/proc/PID/task/TID/syscall): "the thread is now blocked inside". False after [timeout].
bool wait_for_thread_in_syscall(pid_t pid, const std::vector<long>& syscalls, std::chrono::milliseconds timeout);

}  // namespace lg::test
