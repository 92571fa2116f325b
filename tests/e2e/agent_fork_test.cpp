// fork() while the agent runs a long request (docs/consistency.md, "fork()"): the parent's
// fork() waits for the request at most Agent::kForkWaitMs, then goes ahead. The child's copy of
// the registry may then be half-changed: its agent must still answer `livegraft status CHILD`,
// truthfully (the state from before that request, and why changes are refused), refuse every
// change, and leave the parent's request to finish normally.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "harness.h"

namespace lg::e2e {
namespace {

namespace fs = std::filesystem;

// A FIFO the gated patch's constructor opens and reads one byte from (tests/e2e/patches/
// calc_gated_ctor.c): opened() returns once the constructor runs, release() lets it return.
class Gate {
 public:
  Gate() {
    char tmpl[] = "/tmp/livegraft-gate-XXXXXX";
    if (::mkdtemp(tmpl)) dir_ = tmpl;
    path_ = dir_ + "/gate";
    if (dir_.empty() || ::mkfifo(path_.c_str(), 0600) != 0) ADD_FAILURE() << "mkfifo " << path_;
  }
  ~Gate() {
    release();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  const std::string& path() const { return path_; }
  // Waits until the constructor opened the FIFO (a non-blocking open for writing fails with
  // ENXIO until a reader has it open).
  bool opened(std::chrono::seconds timeout = std::chrono::seconds(20)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (fd_ < 0 && std::chrono::steady_clock::now() < deadline) {
      fd_ = ::open(path_.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
      if (fd_ < 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return fd_ >= 0;
  }
  void release() {
    if (fd_ < 0) return;
    (void)!::write(fd_, "x", 1);
    ::close(fd_);
    fd_ = -1;
  }

 private:
  std::string dir_, path_;
  int fd_ = -1;
};

struct Child {
  pid_t pid = -1;
  long fork_us = -1;
  ~Child() {
    if (pid > 0) ::kill(pid, SIGKILL);  // the target's child, not ours: killed by pid
  }
};

// `livegraft --json status PID` once the child's agent serves (its socket appears 20 ms after
// the fork).
CliRun status_when_served(pid_t pid) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (;;) {
    CliRun s = livegraft({"--json", "status", std::to_string(pid)});
    if ((s.json.is_object() && s.json.value("agent", false)) || std::chrono::steady_clock::now() > deadline) return s;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

std::vector<std::string> patch_names(const CliRun& s) {
  std::vector<std::string> out;
  if (s.json.is_object() && s.json["patches"].is_array())
    for (const auto& p : s.json["patches"]) out.push_back(p.value("name", ""));
  return out;
}

TEST(AgentFork, ChildForkedDuringALongLoadAnswersStatusWithTheStateBeforeItAndRefusesChanges) {
  Gate gate;
  Target t(target_path("calc_fork"), {}, {"LG_TEST_CTOR_GATE=" + gate.path()});
  const std::string pid = std::to_string(t.pid());
  CliRun fixed = livegraft({"apply", pid, patch_path("calc_fix")});
  ASSERT_EQ(fixed.exit_code, 0) << fixed.err;
  ASSERT_EQ(t.ask("c 5"), "52");
  ASSERT_EQ(t.ask("d 3"), "3");

  // The load of the gated patch runs in the agent (its constructor waits at the gate) ...
  CliProcess slow({"apply", pid, patch_path("calc_gated_ctor")});
  ASSERT_TRUE(gate.opened()) << "the gated patch's constructor never ran";
  // ... while the program forks: fork() waits for the request at most 200 ms, then goes ahead.
  t.send("f");
  Child child;
  std::string line = t.read_line();
  ASSERT_EQ(std::sscanf(line.c_str(), "child %d %ld", &child.pid, &child.fork_us), 2) << line;
  std::printf("fork() in the parent took %ld us while the agent's request ran\n", child.fork_us);
  const std::string cpid = std::to_string(child.pid);

  CliRun s = status_when_served(child.pid);
  ASSERT_EQ(s.exit_code, 0) << "the child's agent does not answer: " << s.err << s.out;
  EXPECT_EQ(s.json["agent"], true) << s.out;
  ASSERT_TRUE(s.json["disabled"].is_string()) << "the child's agent must say why it refuses changes: " << s.out;
  const std::string why = s.json["disabled"];
  EXPECT_NE(why.find("forked from process " + pid), std::string::npos) << why;
  EXPECT_NE(why.find("'load'"), std::string::npos) << why;
  // The state from before the load: calc-fix, not the patch whose load was cut in two.
  EXPECT_EQ(patch_names(s), std::vector<std::string>{"calc-fix"}) << s.out;

  CliRun apply = livegraft({"apply", cpid, patch_path("calc_depth")});
  EXPECT_NE(apply.exit_code, 0) << "a child copied mid-request must refuse changes";
  EXPECT_NE(apply.err.find("forked from process"), std::string::npos) << apply.err;
  CliRun revert = livegraft({"revert", cpid, "calc-fix"});
  EXPECT_NE(revert.exit_code, 0);
  EXPECT_NE(revert.err.find("forked from process"), std::string::npos) << revert.err;
  CliRun again = livegraft({"--json", "status", cpid});
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(patch_names(again), std::vector<std::string>{"calc-fix"}) << again.out;

  // The parent's load goes on and completes; its agent is untouched.
  gate.release();
  CliRun loaded = slow.finish();
  EXPECT_EQ(loaded.exit_code, 0) << loaded.err;
  EXPECT_EQ(t.ask("d 3"), "1003");
  EXPECT_EQ(t.ask("c 5"), "52");
  CliRun ps = livegraft({"--json", "status", pid});
  ASSERT_EQ(ps.exit_code, 0) << ps.err;
  EXPECT_TRUE(ps.json["disabled"].is_null()) << ps.out;
  EXPECT_EQ(patch_names(ps), (std::vector<std::string>{"calc-fix", "calc-gated-ctor"})) << ps.out;
}

// The ordinary case stays as it was: a fork between requests gives a child whose agent serves
// normally (changes included).
TEST(AgentFork, ChildForkedBetweenRequestsServesNormally) {
  Target t(target_path("calc_fork"));
  const std::string pid = std::to_string(t.pid());
  ASSERT_EQ(livegraft({"apply", pid, patch_path("calc_fix")}).exit_code, 0);
  t.send("f");
  Child child;
  std::string line = t.read_line();
  ASSERT_EQ(std::sscanf(line.c_str(), "child %d %ld", &child.pid, &child.fork_us), 2) << line;
  CliRun s = status_when_served(child.pid);
  ASSERT_EQ(s.exit_code, 0) << s.err;
  EXPECT_TRUE(s.json["disabled"].is_null()) << s.out;
  EXPECT_EQ(patch_names(s), std::vector<std::string>{"calc-fix"}) << s.out;
  CliRun revert = livegraft({"revert", std::to_string(child.pid), "calc-fix"});
  EXPECT_EQ(revert.exit_code, 0) << revert.err;
  EXPECT_EQ(t.ask("c 5"), "52") << "the child's revert changed the parent";
}

}  // namespace
}  // namespace lg::e2e
