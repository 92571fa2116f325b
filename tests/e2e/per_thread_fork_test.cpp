// fork() during a per-thread transition (docs/consistency.md, "Tests"): the child has one thread
// (the forking one) and a copy of the agent's transition state, thunks included. It must run one
// version consistently, its agent must answer `livegraft status CHILD`, and the next command
// there must finish the child's copy of the transition — while the parent's goes on untouched.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/syscall.h>

#include <cstdio>
#include <filesystem>
#include <thread>

#include "per_thread_support.h"

namespace lg::e2e {
namespace {

// The child of the target: killed by pid at the end (it is the target's child, not ours).
class ForkedChild {
 public:
  explicit ForkedChild(Target& t) : t_(t) {
    t.send("f");
    std::string line = t.read_line();
    if (std::sscanf(line.c_str(), "child %d %d", &pid_, &first_) != 2) ADD_FAILURE() << "unexpected answer: " << line;
  }
  ~ForkedChild() {
    if (pid_ > 0) ::kill(pid_, SIGKILL);
  }
  pid_t pid() const { return pid_; }
  int first_answer() const { return first_; }
  std::string ask_outer() { return t_.ask("F c"); }
  // `livegraft --json status CHILD` once the child's agent serves (it opens its socket 20 ms
  // after the fork, so that a fork+exec leaves none behind).
  CliRun status() {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    for (;;) {
      CliRun s = livegraft({"--json", "status", std::to_string(pid_)});
      if ((s.json.is_object() && s.json.value("agent", false)) || std::chrono::steady_clock::now() > deadline) return s;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

 private:
  Target& t_;
  pid_t pid_ = -1;
  int first_ = -1;
};

TEST(PerThreadFork, ChildForkedDuringAnApplyRunsOneVersionAndItsAgentFinishesTheTransition) {
  Target t(target_path("pt_hazards"));
  const std::string pid = std::to_string(t.pid());
  ASSERT_EQ(t.ask("i"), "idle");
  ASSERT_EQ(t.ask("b"), "started");
  ASSERT_TRUE(wait_for_thread_in_syscall(t.pid(), {SYS_read}));  // holds the apply open
  CliRun k = pt({"apply", "--timeout", "0.3", "--on-timeout", "keep", pid, patch_path("pt_pair_fix")});
  ASSERT_EQ(k.exit_code, 5) << k.err;
  ASSERT_EQ(t.ask("c"), "220");  // the main thread switched; it forks now
  ForkedChild child(t);
  ASSERT_GT(child.pid(), 0);
  const std::string cpid = std::to_string(child.pid());
  EXPECT_EQ(child.first_answer(), 220);
  EXPECT_EQ(child.ask_outer(), "child 220");

  CliRun s = child.status();
  ASSERT_EQ(s.exit_code, 0) << s.err << s.out;
  EXPECT_EQ(s.json["agent"], true) << s.out;
  const auto& tr = s.json["transition"];
  ASSERT_TRUE(tr.is_object()) << "the child's copy of the transition is gone: " << s.out;
  EXPECT_EQ(tr["patch"], "pt-pair-fix");
  EXPECT_EQ(tr["kind"], "apply");
  EXPECT_EQ(tr["phase"], "switching");
  // The forked thread and the agent's own two threads (started in the child, born switched).
  EXPECT_EQ(tr["threads"]["total"], 3) << s.out;
  EXPECT_EQ(tr["threads"]["switched"], 3) << s.out;
  EXPECT_EQ(tr["threads"]["pending"].size(), 0u) << s.out;
  // The child's only host thread is switched: the child's apply completes at once.
  CliRun a = pt({"--json", "apply", "--timeout", "10", cpid, patch_path("pt_pair_fix")});
  ASSERT_EQ(a.exit_code, 0) << a.err << a.out;
  EXPECT_EQ(a.json["continued"], "apply") << a.out;
  EXPECT_EQ(child.ask_outer(), "child 220");
  CliRun s2 = livegraft({"--json", "status", cpid});
  EXPECT_TRUE(s2.json["transition"].is_null()) << s2.out;
  ASSERT_EQ(s2.json["patches"].size(), 1u) << s2.out;
  EXPECT_EQ(s2.json["patches"][0]["state"], "enabled");
  ASSERT_EQ(pt({"revert", cpid, "pt-pair-fix"}).exit_code, 0);
  EXPECT_EQ(child.ask_outer(), "child 110");

  // The parent's transition is its own: still open, held by the blocked thread.
  CliRun ps = livegraft({"--json", "status", pid});
  ASSERT_TRUE(ps.json["transition"].is_object()) << ps.out;
  EXPECT_EQ(t.ask("c"), "220");
  t.send("r");
  EXPECT_EQ(t.read_line(), "done 110");
  CliRun pa = pt({"apply", "--timeout", "10", pid, patch_path("pt_pair_fix")});
  ASSERT_EQ(pa.exit_code, 0) << pa.err;
  EXPECT_EQ(t.ask("c"), "220");
}

TEST(PerThreadFork, ChildForkedDuringARevertStaysOnTheOldCodeAndCompletesIt) {
  Target t(target_path("pt_hazards"));
  const std::string pid = std::to_string(t.pid());
  ASSERT_EQ(pt({"apply", pid, patch_path("pt_pair_fix")}).exit_code, 0);
  ASSERT_EQ(t.ask("b"), "started");
  ASSERT_TRUE(wait_for_thread_in_syscall(t.pid(), {SYS_read}));  // inside the new outer()
  CliRun k = pt({"revert", "--timeout", "0.3", "--on-timeout", "keep", pid, "pt-pair-fix"});
  ASSERT_EQ(k.exit_code, 5) << k.err;
  ASSERT_EQ(t.ask("c"), "110");
  ForkedChild child(t);
  ASSERT_GT(child.pid(), 0);
  const std::string cpid = std::to_string(child.pid());
  EXPECT_EQ(child.first_answer(), 110);
  CliRun s = child.status();
  ASSERT_EQ(s.exit_code, 0) << s.err << s.out;
  ASSERT_TRUE(s.json["transition"].is_object()) << s.out;
  EXPECT_EQ(s.json["transition"]["kind"], "revert");
  CliRun r = pt({"--json", "revert", "--timeout", "10", cpid, "pt-pair-fix"});
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  EXPECT_EQ(child.ask_outer(), "child 110");
  CliRun s2 = livegraft({"--json", "status", cpid});
  EXPECT_TRUE(s2.json["transition"].is_null()) << s2.out;
  EXPECT_EQ(s2.json["patches"].size(), 0u) << s2.out;
  // The parent: the blocked thread still runs the new code, then the revert finishes.
  t.send("r");
  EXPECT_EQ(t.read_line(), "done 220");
  ASSERT_EQ(pt({"revert", "--timeout", "10", pid, "pt-pair-fix"}).exit_code, 0);
  EXPECT_EQ(t.ask("c"), "110");
}

// A child that execs at once (fork+exec, as a service spawning helpers does) leaves no agent
// socket behind: the child's agent opens it only 20 ms after the fork.
TEST(PerThreadFork, ChildThatExecsAtOnceLeavesNoSocketBehind) {
  Target t(target_path("pt_hazards"));
  ASSERT_EQ(livegraft({"inject", std::to_string(t.pid())}).exit_code, 0);
  const std::string dir = "/tmp/livegraft-" + std::to_string(::geteuid() == 0 || ::getuid() == 0 ? 0 : ::geteuid());
  ASSERT_TRUE(std::filesystem::exists(dir + "/agent-" + std::to_string(t.pid()) + ".sock"));
  for (int i = 0; i < 5; ++i) {
    int child = 0, status = -1;
    std::string line = t.ask("e");
    ASSERT_EQ(std::sscanf(line.c_str(), "exec child %d %d", &child, &status), 2) << line;
    EXPECT_EQ(status, 0);
    EXPECT_FALSE(std::filesystem::exists(dir + "/agent-" + std::to_string(child) + ".sock")) << "a socket for the exec'ed child " << child;
  }
  EXPECT_EQ(t.ask("c"), "110");
}

}  // namespace
}  // namespace lg::e2e
