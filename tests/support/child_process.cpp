#include "child_process.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace lg::test {

namespace {
using Clock = std::chrono::steady_clock;

int ms_left(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<long>(left, 0, 1000));
}
}  // namespace

ChildProcess::ChildProcess(const std::string& path, const std::vector<std::string>& args, const SpawnOptions& options) {
  int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
  if ((options.pipe_stdin && pipe2(in, O_CLOEXEC) != 0) || (options.pipe_stdout && pipe2(out, O_CLOEXEC) != 0) ||
      (options.pipe_stderr && pipe2(err, O_CLOEXEC) != 0))
    throw std::runtime_error("pipe2 failed");
  // Everything the child needs is built before fork (no allocation after it).
  std::vector<std::string> strings{path};
  strings.insert(strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : strings) argv.push_back(s.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_strings = options.env;
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    if (in[0] >= 0) dup2(in[0], 0);
    if (out[1] >= 0) dup2(out[1], 1);
    if (err[1] >= 0) dup2(err[1], 2);
    if (options.as_uid >= 0 && (setresgid(options.as_uid, options.as_uid, options.as_uid) != 0 ||
                                setresuid(options.as_uid, options.as_uid, options.as_uid) != 0))
      _exit(126);
    for (auto& e : env_strings) putenv(e.data());
    execv(path.c_str(), argv.data());
    _exit(127);
  }
  for (int fd : {in[0], out[1], err[1]})
    if (fd >= 0) close(fd);
  in_ = in[1];
  out_ = out[0];
  err_ = err[0];
}

ChildProcess::~ChildProcess() { kill_and_reap(); }

bool ChildProcess::write_stdin(const std::string& bytes) {
  if (in_ < 0) return false;
  for (size_t off = 0; off < bytes.size();) {
    ssize_t n = write(in_, bytes.data() + off, bytes.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

void ChildProcess::close_stdin() {
  if (in_ >= 0) close(in_);
  in_ = -1;
}

bool ChildProcess::read_some(int& fd, std::string& buf) {
  char chunk[4096];
  ssize_t n = read(fd, chunk, sizeof chunk);
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return true;
  if (n <= 0) {
    close(fd);
    fd = -1;
    return false;
  }
  buf.append(chunk, static_cast<size_t>(n));
  return true;
}

std::optional<std::string> ChildProcess::read_line(Stream stream, std::chrono::milliseconds timeout) {
  int& fd = stream == Stream::out ? out_ : err_;
  std::string& buf = stream == Stream::out ? out_buf_ : err_buf_;
  auto deadline = Clock::now() + timeout;
  for (;;) {
    if (auto nl = buf.find('\n'); nl != std::string::npos) {
      std::string line = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      return line;
    }
    if (fd < 0 || Clock::now() >= deadline) return std::nullopt;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, ms_left(deadline)) > 0) read_some(fd, buf);
  }
}

bool ChildProcess::pump_until(const std::function<bool()>& stop, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    if (stop && stop()) return true;
    if (out_ < 0 && err_ < 0) return true;
    if (Clock::now() >= deadline) return false;
    pollfd fds[2] = {{out_, POLLIN, 0}, {err_, POLLIN, 0}};  // a negative fd is ignored by poll
    if (poll(fds, 2, ms_left(deadline)) <= 0) continue;
    if (fds[0].revents) read_some(out_, out_buf_);
    if (fds[1].revents) read_some(err_, err_buf_);
  }
}

bool ChildProcess::alive() {
  if (reaped_ || pid_ <= 0) return false;
  if (waitpid(pid_, &status_, WNOHANG) == pid_) {
    reaped_ = true;
    return false;
  }
  return true;
}

int ChildProcess::exit_code() const {
  return WIFEXITED(status_) ? WEXITSTATUS(status_) : WIFSIGNALED(status_) ? 128 + WTERMSIG(status_) : -1;
}

int ChildProcess::wait_exit(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (alive() && Clock::now() < deadline) {
    if (out_ >= 0 || err_ >= 0) pump_until([&] { return !alive(); }, std::chrono::milliseconds(10));
    else std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  if (alive()) {
    killed_by_us_ = true;
    kill(pid_, SIGKILL);
    waitpid(pid_, &status_, 0);
    reaped_ = true;
  }
  return reaped_ ? exit_code() : -1;
}

void ChildProcess::kill_and_reap() {
  if (pid_ > 0 && !reaped_) {
    kill(pid_, SIGKILL);
    waitpid(pid_, &status_, 0);
    reaped_ = true;
  }
  for (int* fd : {&in_, &out_, &err_})
    if (*fd >= 0) {
      close(*fd);
      *fd = -1;
    }
}

char thread_state(pid_t pid, pid_t tid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/stat");
  std::stringstream ss;
  ss << in.rdbuf();
  std::string stat = ss.str();
  auto close_paren = stat.rfind(')');  // the command name may hold ')' and spaces
  return close_paren == std::string::npos || close_paren + 2 >= stat.size() ? 0 : stat[close_paren + 2];
}

std::vector<pid_t> thread_ids(pid_t pid) {
  std::vector<pid_t> tids;
  std::string path = "/proc/" + std::to_string(pid) + "/task";
  DIR* dir = opendir(path.c_str());
  if (!dir) return tids;
  while (dirent* e = readdir(dir))
    if (e->d_name[0] >= '0' && e->d_name[0] <= '9') tids.push_back(static_cast<pid_t>(std::atoi(e->d_name)));
  closedir(dir);
  std::sort(tids.begin(), tids.end());
  return tids;
}

bool wait_for_thread_in_syscall(pid_t pid, const std::vector<long>& syscalls, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    for (pid_t tid : thread_ids(pid)) {
      if (tid == pid) continue;
      std::ifstream in("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/syscall");
      long nr = -1;
      if (in >> nr && std::find(syscalls.begin(), syscalls.end(), nr) != syscalls.end()) return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

}  // namespace lg::test
