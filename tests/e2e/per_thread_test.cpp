// The per-thread consistency model (docs/consistency.md) on real processes: a thread blocked
// inside an old function keeps running old versions of every patched function while the other
// threads already run the new ones, and no moment has every thread stopped.
#include <dirent.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <future>
#include <thread>

#include "harness.h"
#include "per_thread_support.h"

namespace lg::e2e {
namespace {

using namespace std::chrono_literals;

TEST(PerThread, ThreadBlockedInOldFunctionKeepsOldVersionsWhileOthersRunTheNew) {
  Target t(target_path("pt_pair"));
  const std::string pid = std::to_string(t.pid());
  ASSERT_EQ(t.ask("c"), "110");
  ASSERT_EQ(t.ask("b"), "started");  // blocked inside the old outer()
  auto apply = std::async(std::launch::async, [&] { return pt({"--json", "apply", "--timeout", "60", pid, patch_path("pt_pair_fix")}); });
  // The main thread switches at once and runs new outer + new inner...
  wait_for_answer(t, "110", "220");
  // ...while the transition waits for the blocked thread.
  EXPECT_EQ(apply.wait_for(200ms), std::future_status::timeout) << "the transition finished with a thread inside old outer()";
  t.send("r");  // it returns from old outer(), whose call to inner() must reach the old inner()
  EXPECT_EQ(t.read_line(), "done 110");
  CliRun a = apply.get();
  ASSERT_EQ(a.exit_code, 0) << a.err << a.out;
  EXPECT_EQ(a.json["transition"]["model"], "per-thread");
  EXPECT_EQ(a.json["transition"]["max_stopped_threads"].get<int>(), 1) << a.out;
  EXPECT_GT(a.json["transition"]["rounds"].get<int>(), 1) << a.out;
  // After completion everybody runs the new code, including a thread blocked in outer() now.
  EXPECT_EQ(t.ask("c"), "220");
  ASSERT_EQ(t.ask("b"), "started");
  t.send("r");
  EXPECT_EQ(t.read_line(), "done 220");

  // Reverting: a thread blocked inside the *new* outer() keeps the new code until it returns.
  ASSERT_EQ(t.ask("b"), "started");
  auto revert = std::async(std::launch::async, [&] { return pt({"--json", "revert", "--timeout", "60", pid, "pt-pair-fix"}); });
  wait_for_answer(t, "220", "110");
  EXPECT_EQ(revert.wait_for(200ms), std::future_status::timeout);
  t.send("r");
  EXPECT_EQ(t.read_line(), "done 220");
  CliRun r = revert.get();
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  EXPECT_EQ(t.ask("c"), "110");
  CliRun s = livegraft({"--json", "status", pid});
  EXPECT_EQ(s.json["patches"].size(), 0u) << s.out;
  EXPECT_EQ(s.json["transition"], nullptr) << s.out;
  EXPECT_EQ(t.quit(), 0);
}

TEST(PerThread, NoMomentHasEveryThreadStopped) {
  Target t(target_path("pt_pair"));
  const std::string pid = std::to_string(t.pid());
  ASSERT_EQ(t.ask("i"), "idle");
  ASSERT_EQ(t.ask("i"), "idle");
  // Injecting the agent is not part of a transition (its remote dlopen detaches by stopping
  // everyone): done before sampling.
  ASSERT_EQ(livegraft({"inject", pid}).exit_code, 0);
  StopSampler sampler(t.pid());
  for (int i = 0; i < 5; ++i) {
    CliRun a = pt({"--json", "apply", pid, patch_path("pt_pair_fix")});
    ASSERT_EQ(a.exit_code, 0) << a.err;
    EXPECT_EQ(a.json["transition"]["max_stopped_threads"].get<int>(), 1);
    EXPECT_EQ(t.ask("c"), "220");
    CliRun r = pt({"--json", "revert", pid, "pt-pair-fix"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.json["transition"]["max_stopped_threads"].get<int>(), 1);
    EXPECT_EQ(t.ask("c"), "110");
  }
  EXPECT_GT(sampler.samples(), 10);
  EXPECT_FALSE(sampler.all_stopped_seen()) << "a sample of /proc/PID/task had every thread stopped";
  EXPECT_EQ(t.quit(), 0);
}

// The sampler above can fail: it does see the stop of a stop-the-world switch.
TEST(PerThread, SamplerSeesTheGlobalStopOfStopTheWorld) {
  Target t(target_path("pt_pair"));
  const std::string pid = std::to_string(t.pid());
  ASSERT_EQ(t.ask("i"), "idle");
  ASSERT_EQ(livegraft({"inject", pid}).exit_code, 0);
  StopSampler sampler(t.pid());
  for (int i = 0; i < 20 && !sampler.all_stopped_seen(); ++i) {
    ASSERT_EQ(livegraft({"apply", "--model", "stop-the-world", pid, patch_path("pt_pair_fix")}).exit_code, 0);
    ASSERT_EQ(livegraft({"revert", "--model", "stop-the-world", pid, "pt-pair-fix"}).exit_code, 0);
  }
  EXPECT_TRUE(sampler.all_stopped_seen());
}

TEST(PerThread, TimeoutReversesAndLeavesTheProcessAsItWas) {
  Target t(target_path("pt_pair"));
  const std::string pid = std::to_string(t.pid());
  ASSERT_EQ(t.ask("b"), "started");
  CliRun a = pt({"--json", "apply", "--timeout", "0.3", pid, patch_path("pt_pair_fix")});
  EXPECT_EQ(a.exit_code, 5) << a.err << a.out;
  ASSERT_TRUE(a.json.is_object()) << a.out;
  ASSERT_GE(a.json["blockers"].size(), 1u) << a.out;
  EXPECT_NE(a.json["error"].get<std::string>().find("reversed"), std::string::npos) << a.out;
  EXPECT_EQ(t.ask("c"), "110");
  CliRun s = livegraft({"--json", "status", pid});
  EXPECT_EQ(s.json["patches"].size(), 0u) << s.out;
  EXPECT_EQ(s.json["functions"].size(), 0u) << s.out;
  EXPECT_EQ(s.json["transition"], nullptr) << s.out;
  t.send("r");
  EXPECT_EQ(t.read_line(), "done 110");
  EXPECT_EQ(t.quit(), 0);
}

// Runs `livegraft ARGS` with LIVEGRAFT_KILL_AT=[point]: the controller SIGKILLs itself there.
CliRun killed_at(const std::string& point, std::vector<std::string> args) {
  setenv("LIVEGRAFT_KILL_AT", point.c_str(), 1);
  CliRun r = pt(std::move(args));
  unsetenv("LIVEGRAFT_KILL_AT");
  return r;
}

TEST(PerThread, ControllerKilledWhileThreadsSwitchLeavesItInProgressAndApplyContinues) {
  Target t(target_path("pt_pair"));
  const std::string pid = std::to_string(t.pid());
  ASSERT_EQ(t.ask("b"), "started");
  // Killed after switch_early, before any thread was switched: the entries are int3s, and the
  // transition stays in progress in the poking phase.
  CliRun k = killed_at("apply.per_thread_switch_early", {"apply", "--timeout", "60", pid, patch_path("pt_pair_fix")});
  ASSERT_NE(k.exit_code, 0);
  ASSERT_TRUE(t.alive());
  EXPECT_EQ(t.ask("c"), "110");  // nobody switched: everyone runs the old versions
  CliRun s = livegraft({"--json", "status", pid});
  ASSERT_EQ(s.exit_code, 0) << s.err;
  const auto& tr = s.json["transition"];
  ASSERT_TRUE(tr.is_object()) << s.out;
  EXPECT_EQ(tr["patch"], "pt-pair-fix");
  EXPECT_EQ(tr["kind"], "apply");
  EXPECT_EQ(tr["phase"], "poking");
  ASSERT_TRUE(tr["threads"].is_object()) << s.out;
  bool outer_named = false;
  for (const auto& p : tr["threads"]["pending"])
    if (p["reason"].get<std::string>().find("outer") != std::string::npos) outer_named = true;
  EXPECT_TRUE(outer_named) << s.out;
  CliRun human = livegraft({"status", pid});
  EXPECT_NE(human.out.find("transition in progress: apply of 'pt-pair-fix'"), std::string::npos) << human.out;
  // Another patch is refused while it is in progress; the same patch continues it.
  auto cont = std::async(std::launch::async, [&] { return pt({"--json", "apply", "--timeout", "60", pid, patch_path("pt_pair_fix")}); });
  wait_for_answer(t, "110", "220");
  t.send("r");
  EXPECT_EQ(t.read_line(), "done 110");
  CliRun c = cont.get();
  ASSERT_EQ(c.exit_code, 0) << c.err << c.out;
  EXPECT_EQ(c.json["continued"], "apply");
  EXPECT_EQ(t.ask("c"), "220");
  CliRun s2 = livegraft({"--json", "status", pid});
  EXPECT_TRUE(s2.json["transition"].is_null()) << s2.out;
  ASSERT_EQ(s2.json["patches"].size(), 1u);
  EXPECT_EQ(s2.json["patches"][0]["state"], "enabled");
  EXPECT_EQ(s2.json["patches"][0]["model"], "per-thread");
}

TEST(PerThread, ControllerKilledThenRevertReversesTheApplyInProgress) {
  Target t(target_path("pt_pair"));
  const std::string pid = std::to_string(t.pid());
  ASSERT_EQ(t.ask("b"), "started");
  CliRun k = killed_at("apply.per_thread_switching", {"apply", "--timeout", "60", pid, patch_path("pt_pair_fix")});
  ASSERT_NE(k.exit_code, 0);
  CliRun r = pt({"--json", "revert", pid, "pt-pair-fix"});
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  EXPECT_EQ(r.json["reversed"], true);
  CliRun s = livegraft({"--json", "status", pid});
  EXPECT_TRUE(s.json["transition"].is_null()) << s.out;
  EXPECT_EQ(s.json["patches"].size(), 0u) << s.out;
  EXPECT_EQ(s.json["functions"].size(), 0u) << s.out;
  EXPECT_EQ(t.ask("c"), "110");
  t.send("r");
  EXPECT_EQ(t.read_line(), "done 110");
}

TEST(PerThread, RevertOfAnApplyInProgressSendsSwitchedThreadsBack) {
  Target t(target_path("pt_pair"));
  const std::string pid = std::to_string(t.pid());
  ASSERT_EQ(t.ask("b"), "started");
  CliRun k = pt({"--json", "apply", "--timeout", "0.5", "--on-timeout", "keep", pid, patch_path("pt_pair_fix")});
  EXPECT_EQ(k.exit_code, 5) << k.err << k.out;
  EXPECT_NE(k.json["error"].get<std::string>().find("stays in progress"), std::string::npos) << k.out;
  EXPECT_EQ(t.ask("c"), "220");  // the main thread did switch
  CliRun r = pt({"--json", "revert", "--timeout", "30", pid, "pt-pair-fix"});
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  EXPECT_EQ(t.ask("c"), "110");  // ...and went back
  t.send("r");
  EXPECT_EQ(t.read_line(), "done 110");  // the blocked thread never left the old versions
  CliRun s = livegraft({"--json", "status", pid});
  EXPECT_EQ(s.json["patches"].size(), 0u) << s.out;
}

TEST(PerThread, ForceSwitchesTheBlockedThreadWithoutAStackCheck) {
  Target t(target_path("pt_pair"));
  const std::string pid = std::to_string(t.pid());
  ASSERT_EQ(t.ask("b"), "started");
  CliRun k = pt({"apply", "--timeout", "0.3", "--on-timeout", "keep", pid, patch_path("pt_pair_fix")});
  ASSERT_EQ(k.exit_code, 5) << k.err;
  CliRun none = livegraft({"--json", "force", std::to_string(getpid())});
  EXPECT_NE(none.exit_code, 0);
  CliRun f = livegraft({"--json", "force", pid});
  ASSERT_EQ(f.exit_code, 0) << f.err << f.out;
  EXPECT_NE(f.err.find("warning"), std::string::npos) << f.err;
  EXPECT_GE(f.json["forced"].get<int>(), 1) << f.out;
  CliRun s = livegraft({"--json", "status", pid});
  EXPECT_TRUE(s.json["transition"].is_null()) << s.out;
  EXPECT_EQ(t.ask("c"), "220");
  // What force risks, made visible: the thread forced while inside the old outer() now calls
  // the new inner() from it (old outer + new inner = 120).
  t.send("r");
  EXPECT_EQ(t.read_line(), "done 120");
}

// Waits until the loop's last result is [want].
void wait_for_loop(Target& t, const std::string& want) {
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (t.ask("v") != want) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline);
    std::this_thread::sleep_for(10ms);
  }
}

TEST(PerThread, EventLoopInsideAPatchedFunctionNeverSwitchesWithoutHelp) {
  Target t(target_path("pt_loop"), {"0"});
  const std::string pid = std::to_string(t.pid());
  CliRun a = pt({"--json", "apply", "--timeout", "1", pid, patch_path("pt_loop_fix")});
  EXPECT_EQ(a.exit_code, 5) << a.err << a.out;
  ASSERT_TRUE(a.json.is_object()) << a.out;
  bool handle_named = false;
  for (const auto& b : a.json["blockers"])
    if (b["reason"].get<std::string>().find("handle") != std::string::npos) handle_named = true;
  EXPECT_TRUE(handle_named) << a.out;
  EXPECT_EQ(t.ask("v"), "1");
  // force finishes it.
  CliRun k = pt({"apply", "--timeout", "0.5", "--on-timeout", "keep", pid, patch_path("pt_loop_fix")});
  ASSERT_EQ(k.exit_code, 5) << k.err;
  CliRun f = livegraft({"--json", "force", pid});
  ASSERT_EQ(f.exit_code, 0) << f.err << f.out;
  wait_for_loop(t, "2");
}

TEST(PerThread, EventLoopCallingTheSafepointSwitchesThere) {
  Target t(target_path("pt_loop"), {"1"});
  const std::string pid = std::to_string(t.pid());
  CliRun a = pt({"--json", "apply", "--timeout", "20", pid, patch_path("pt_loop_fix")});
  ASSERT_EQ(a.exit_code, 0) << a.err << a.out;
  wait_for_loop(t, "2");
  CliRun r = pt({"--json", "revert", "--timeout", "20", pid, "pt-loop-fix"});
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  wait_for_loop(t, "1");
  EXPECT_EQ(t.quit(), 0);
}

}  // namespace
}  // namespace lg::e2e
