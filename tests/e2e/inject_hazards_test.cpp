// Injection hazards: the controller killed at every step of an injection, a target under a
// seccomp filter. Each test names the hazard it covers (docs/injection.md).
#include <gtest/gtest.h>
#include <signal.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <regex>
#include <thread>

#include "harness.h"

namespace lg::e2e {
namespace {

struct KilledRun {
  bool killed = false;  // ended by SIGKILL
  int exit_code = -1;
  std::string err;
};

// Runs `livegraft ARGS` with extra environment entries, stdout discarded, stderr captured.
KilledRun livegraft_with_env(const std::vector<std::string>& args, const std::vector<std::string>& env) {
  int err_pipe[2];
  if (pipe2(err_pipe, O_CLOEXEC) != 0) return {};
  std::string exe = livegraft_path();
  pid_t pid = fork();
  if (pid == 0) {
    int devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 1);
    dup2(err_pipe[1], 2);
    for (const auto& e : env) putenv(const_cast<char*>(e.c_str()));
    std::vector<char*> argv{exe.data()};
    std::vector<std::string> copy = args;
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(exe.c_str(), argv.data());
    _exit(127);
  }
  close(err_pipe[1]);
  KilledRun run;
  char buf[4096];
  for (ssize_t n; (n = read(err_pipe[0], buf, sizeof buf)) > 0;) run.err.append(buf, static_cast<size_t>(n));
  close(err_pipe[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  run.killed = WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL;
  run.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return run;
}

// The kill points `livegraft inject` passes through for a fresh target, in order.
std::vector<std::string> inject_kill_points(const std::vector<std::string>& target_args) {
  Target t(target_path("inject_counter"), target_args);
  KilledRun r = livegraft_with_env({"inject", std::to_string(t.pid())}, {"LIVEGRAFT_KILL_TRACE=1"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::vector<std::string> names;
  std::regex line(R"(livegraft: kill point (\d+) (\S+))");
  for (std::sregex_iterator it(r.err.begin(), r.err.end(), line), end; it != end; ++it) names.push_back((*it)[2]);
  return names;
}

// The spinner of inject_counter found no clobbered register and still makes progress (it may
// wait for a CPU on a loaded machine: asked again until it has advanced, at most ~10 s).
bool spinner_intact(Target& t) {
  for (int i = 0; i < 1000; ++i) {
    std::string v = t.ask("v");
    if (v.rfind("v 0 ", 0) != 0) {
      ADD_FAILURE() << "spinner: " << v;
      return false;
    }
    if (v == "v 0 1") return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ADD_FAILURE() << "the spinner thread no longer runs";
  return false;
}

// For every kill point of an injection: kill the controller there, then the target must be
// alive, answer correctly with its state intact and its registers unclobbered, and a following
// inject and status must work.
void kill_at_every_inject_step(const std::vector<std::string>& target_args) {
  const std::vector<std::string> names = inject_kill_points(target_args);
  ASSERT_GE(names.size(), 10u) << "inject has (almost) no kill points";
  size_t survived = 0;
  for (size_t n = 1; n <= names.size(); ++n) {
    SCOPED_TRACE("kill point " + std::to_string(n) + " " + names[n - 1]);
    Target t(target_path("inject_counter"), target_args);
    const std::string pid = std::to_string(t.pid());
    ASSERT_EQ(t.ask("n"), "1");
    ASSERT_TRUE(spinner_intact(t));
    KilledRun r = livegraft_with_env({"inject", pid}, {"LIVEGRAFT_KILL_AT=" + std::to_string(n)});
    EXPECT_TRUE(r.killed) << "the controller was not killed at point " << n << ": " << r.err;
    bool ok = t.alive();
    EXPECT_TRUE(ok) << "the target died";
    ok = ok && t.ask("n") == "2";
    ok = ok && spinner_intact(t);
    CliRun again = livegraft({"--json", "inject", pid});
    EXPECT_EQ(again.exit_code, 0) << again.err << again.out;
    ok = ok && again.exit_code == 0;
    CliRun status = livegraft({"--json", "status", pid});
    EXPECT_EQ(status.exit_code, 0) << status.err << status.out;
    ok = ok && status.exit_code == 0 && status.json.is_object() && status.json["agent"] == true;
    ok = ok && t.alive() && t.ask("n") == "3" && spinner_intact(t);
    if (ok) ++survived;
    else ADD_FAILURE() << "the target did not survive a controller killed at " << names[n - 1];
  }
  std::printf("[ survived ] %zu of %zu inject kill points (target %s)\n", survived, names.size(),
              target_args.empty() ? "idle main thread" : target_args[0].c_str());
  EXPECT_EQ(survived, names.size());
}

TEST(InjectHazards, ControllerKilledAtEveryStepBorrowingAThreadBlockedInRead) { kill_at_every_inject_step({}); }

TEST(InjectHazards, ControllerKilledAtEveryStepBorrowingABusyThread) { kill_at_every_inject_step({"busy-main"}); }

TEST(InjectHazards, ControllerKilledAtEveryStepBorrowingAThreadInNanosleep) {
  kill_at_every_inject_step({"sleepy-main"});
}

TEST(InjectHazards, SeccompFilterKillingASyscallTheAgentNeedsIsRefusedBeforeTouchingTheProcess) {
  Target t(target_path("seccomp_filtered"), {"socket"});
  const std::string pid = std::to_string(t.pid());
  ASSERT_EQ(t.ask("n"), "1");
  std::string maps_before = t.maps();
  CliRun r = livegraft({"--json", "inject", pid});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(r.json.value("kind", ""), "unsupported") << r.out << r.err;
  const std::string error = r.json.value("error", "");
  EXPECT_NE(error.find("seccomp"), std::string::npos) << error;
  EXPECT_NE(error.find("socket with KILL_PROCESS"), std::string::npos) << error;
  EXPECT_NE(r.json.value("hint", "").find("LD_PRELOAD"), std::string::npos) << r.out;
  ASSERT_TRUE(t.alive()) << "injection killed the seccomp-filtered target";
  EXPECT_EQ(t.ask("n"), "2");
  EXPECT_EQ(t.maps(), maps_before);
}

// A filter that kills on mount() only, and one that kills on everything but the syscalls
// livegraft says injection needs: both let injection and the agent work (the second checks
// that list against what injection and the agent's start really do).
class SeccompAllowing : public ::testing::TestWithParam<const char*> {};
INSTANTIATE_TEST_SUITE_P(InjectHazards, SeccompAllowing, ::testing::Values("mount", "allowlist"));

TEST_P(SeccompAllowing, FilterThatAllowsWhatInjectionNeedsDoesNotPreventIt) {
  Target t(target_path("seccomp_filtered"), {GetParam()});
  const std::string pid = std::to_string(t.pid());
  CliRun r = livegraft({"--json", "inject", pid});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.json["injected"], true);
  CliRun status = livegraft({"--json", "status", pid});
  EXPECT_EQ(status.exit_code, 0) << status.err;
  EXPECT_EQ(status.json["agent"], true) << status.out;
  ASSERT_TRUE(t.alive());
  EXPECT_EQ(t.ask("n"), "1");
}

}  // namespace
}  // namespace lg::e2e
