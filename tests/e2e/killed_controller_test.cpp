// A controller killed in the middle of a transition leaves the target running and consistent:
// the agent notices the closed connection and settles the transition from its own memory
// (docs/agent-protocol.md): no code written → the patch is unloaded, all written → committed.
// The kills are kill points (common/kill_point.h), not sleeps.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/syscall.h>

#include <algorithm>

#include "harness.h"

namespace lg::e2e {
namespace {

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

void expect_no_transition_and_not_disabled(const CliRun& s) {
  ASSERT_EQ(s.exit_code, 0) << s.err;
  ASSERT_TRUE(s.json.is_object()) << s.out;
  EXPECT_TRUE(s.json["disabled"].is_null()) << s.out;
  ASSERT_TRUE(s.json.contains("transition")) << "status does not report the transition: " << s.out;
  EXPECT_TRUE(s.json["transition"].is_null()) << s.out;
}

// Killed while a thread sleeps inside compute(): at the end of the first (blocked) attempt, or
// while only the blocking thread is let run (the nudge), nothing was written.
void kill_while_blocked_and_check(const std::string& kill_point) {
  SCOPED_TRACE(kill_point);
  Target t(target_path("sleeper"), {"3000"});
  const std::string pid = std::to_string(t.pid());
  ASSERT_EQ(livegraft({"inject", pid}).exit_code, 0);
  ASSERT_EQ(t.ask("b"), "started");
  ASSERT_TRUE(wait_for_thread_in_syscall(t.pid(), {SYS_nanosleep, SYS_clock_nanosleep}));  // inside compute()
  std::string maps_before = t.maps();

  CliRun a = livegraft_env({"apply", "--timeout", "60", pid, patch_path("sleeper_fix")},
                           {"LIVEGRAFT_KILL_AT=" + kill_point, "LIVEGRAFT_KILL_TRACE=1"});
  ASSERT_EQ(a.exit_code, 128 + SIGKILL) << "the controller was not killed: " << a.err;
  auto reached = kill_points_of(a.err);
  ASSERT_FALSE(reached.empty());
  EXPECT_EQ(reached.back(), kill_point);
  EXPECT_TRUE(contains(reached, "apply.after_load")) << a.err;
  EXPECT_FALSE(contains(reached, "apply.after_write")) << "code was written before the kill: " << a.err;

  CliRun s = livegraft({"--json", "status", pid});
  expect_no_transition_and_not_disabled(s);
  EXPECT_EQ(s.json["patches"].size(), 0u) << s.out;
  EXPECT_EQ(t.maps(), maps_before) << "the abandoned patch is still mapped";
  EXPECT_EQ(t.ask("c"), "1");
  EXPECT_EQ(t.read_line(std::chrono::seconds(10)), "done 1");

  CliRun again = livegraft({"apply", pid, patch_path("sleeper_fix")});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(t.ask("c"), "2");
}

TEST(KilledController, KilledWhileWaitingForABlockedThreadTheAgentUnloadsThePatchAndTheNextApplyWorks) {
  kill_while_blocked_and_check("apply.after_resume");  // the first after_resume ends the blocked attempt
}

TEST(KilledController, KilledWhileOnlyTheBlockingThreadRunsTheAgentUnloadsThePatchAndTheNextApplyWorks) {
  kill_while_blocked_and_check("apply.after_nudge");
}

TEST(KilledController, KilledAfterTheCodeWriteTheAgentCommitsThePatchAndRevertWorks) {
  // The last code write of a stop-the-world apply is the switch (the generation word): find
  // its kill point number on another target first.
  size_t last_write = 0;
  {
    Target probe(target_path("sleeper"), {"1"});
    CliRun r = livegraft_env({"apply", std::to_string(probe.pid()), patch_path("sleeper_fix")}, {"LIVEGRAFT_KILL_TRACE=1"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto points = kill_points_of(r.err);
    for (size_t i = 0; i < points.size(); ++i)
      if (points[i] == "apply.after_write") last_write = i + 1;
    ASSERT_GT(last_write, 0u) << r.err;
  }
  Target t(target_path("sleeper"), {"1"});
  const std::string pid = std::to_string(t.pid());
  CliRun a = livegraft_env({"apply", pid, patch_path("sleeper_fix")},
                           {"LIVEGRAFT_KILL_AT=" + std::to_string(last_write), "LIVEGRAFT_KILL_TRACE=1"});
  ASSERT_EQ(a.exit_code, 128 + SIGKILL) << "the controller was not killed: " << a.err;
  EXPECT_FALSE(contains(kill_points_of(a.err), "apply.after_commit"));

  CliRun s = livegraft({"--json", "status", pid});
  expect_no_transition_and_not_disabled(s);
  ASSERT_EQ(s.json["patches"].size(), 1u) << s.out;
  EXPECT_EQ(s.json["patches"][0]["name"], "sleeper-fix") << s.out;
  EXPECT_EQ(s.json["patches"][0]["state"], "enabled") << s.out;
  EXPECT_EQ(t.ask("c"), "2");

  CliRun r = livegraft({"revert", pid, "sleeper-fix"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(t.ask("c"), "1");
}

}  // namespace
}  // namespace lg::e2e
