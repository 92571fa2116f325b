#include "harness.h"

#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <cstring>
#include <cerrno>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

namespace lg::e2e {

std::string binary_dir() { return LG_BINARY_DIR; }
std::string target_path(const std::string& name) { return binary_dir() + "/targets/" + name; }
std::string patch_path(const std::string& name) { return binary_dir() + "/patches/" + name + ".o"; }
std::string livegraft_path() { return binary_dir() + "/livegraft"; }

Target::Target(const std::string& path, std::vector<std::string> args, std::vector<std::string> env) {
  test::SpawnOptions options;
  options.env = std::move(env);
  child_ = std::make_unique<test::ChildProcess>(path, args, options);
  pid_ = child_->pid();
  std::string first = read_line(std::chrono::seconds(20));
  EXPECT_EQ(first, "ready") << "target " << path << " did not start";
}

Target::~Target() = default;  // the ChildProcess kills and reaps it

void Target::send(const std::string& line) { ASSERT_TRUE(child_->write_stdin(line + "\n")) << "target " << pid_; }

std::string Target::read_line(std::chrono::milliseconds timeout) {
  auto line = child_->read_line(test::ChildProcess::Stream::out, timeout);
  if (!line) {
    ADD_FAILURE() << "no line from target " << pid_ << " within " << timeout.count() << " ms (timed out or closed)";
    return "";
  }
  return *line;
}

bool Target::alive() { return child_->alive(); }

std::string Target::maps() const {
  std::ifstream in("/proc/" + std::to_string(pid_) + "/maps");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int Target::quit() {
  send("q");
  int code = child_->wait_exit(std::chrono::seconds(10));
  return child_->was_killed_by_us() ? -1 : code;
}

namespace {
test::SpawnOptions cli_spawn_options(const std::vector<std::string>& env, int as_uid) {
  test::SpawnOptions o;
  o.env = env;
  o.as_uid = as_uid;
  o.pipe_stdin = false;
  o.pipe_stderr = true;
  return o;
}
}  // namespace

CliProcess::CliProcess(const std::vector<std::string>& args, const std::vector<std::string>& env, int as_uid)
    : child_(livegraft_path(), args, cli_spawn_options(env, as_uid)) {}

CliProcess::~CliProcess() = default;

bool CliProcess::wait_for_stderr(const std::string& text, std::chrono::milliseconds timeout) {
  const std::string& err = child_.buffered(test::ChildProcess::Stream::err);
  child_.pump_until([&] { return err.find(text) != std::string::npos; }, timeout);
  if (err.find(text) != std::string::npos) return true;
  ADD_FAILURE() << "livegraft did not print '" << text << "'; stderr so far: " << err;
  return false;
}

CliRun CliProcess::finish(std::chrono::milliseconds timeout) {
  auto start = std::chrono::steady_clock::now();
  if (!child_.pump_until(nullptr, timeout))
    ADD_FAILURE() << "livegraft did not finish within " << timeout.count() << " ms: killed";
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(timeout - (std::chrono::steady_clock::now() - start));
  CliRun run;
  run.exit_code = child_.wait_exit(std::max(left, std::chrono::milliseconds(0)));
  run.out = child_.buffered(test::ChildProcess::Stream::out);
  run.err = child_.buffered(test::ChildProcess::Stream::err);
  run.json = nlohmann::json::parse(run.out, nullptr, false);
  if (run.json.is_discarded()) run.json = nullptr;
  return run;
}

CliRun livegraft(const std::vector<std::string>& args, int as_uid) { return CliProcess(args, {}, as_uid).finish(); }

TempDir::TempDir(const std::string& prefix) {
  std::string tmpl = "/tmp/lg-" + prefix + "-XXXXXX";
  if (::mkdtemp(tmpl.data())) path_ = tmpl;
  else ADD_FAILURE() << "mkdtemp " << tmpl << ": " << std::strerror(errno);
}

TempDir::~TempDir() {
  std::error_code ec;
  if (!path_.empty()) std::filesystem::remove_all(path_, ec);
}

std::string build_program_tree(const std::string& name, const std::string& dir) {
  const std::string src = dir + "/src";
  std::error_code ec;
  std::filesystem::copy(std::filesystem::path(LG_SOURCE_DIR) / "tests/programs" / name, src,
                        std::filesystem::copy_options::recursive, ec);
  if (ec) {
    ADD_FAILURE() << "copying tests/programs/" << name << " to " << src << ": " << ec.message();
    return "";
  }
  std::string out;
  if (shell("make -s -C " + src, &out) != 0) {
    ADD_FAILURE() << "make -C " << src << ":\n" << out;
    return "";
  }
  return src;
}

int shell(const std::string& cmd, std::string* out) {
  std::string text;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return -1;
  char buf[512];
  while (size_t n = fread(buf, 1, sizeof buf, p)) text.append(buf, n);
  int st = pclose(p);
  if (out) *out = text;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

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
  if (test::wait_for_thread_in_syscall(pid, syscalls, timeout)) return true;
  ADD_FAILURE() << "no thread of " << pid << " entered the expected system call";
  return false;
}

}  // namespace lg::e2e
