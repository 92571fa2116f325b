// Multi-threaded targets: threads hammering the patched function, a thread blocked inside it,
// and many idle threads.
#include <gtest/gtest.h>
#include <sys/syscall.h>

#include <fstream>
#include <thread>

#include "harness.h"

namespace lg::e2e {
namespace {

int thread_count(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("Threads:", 0) == 0) return std::stoi(line.substr(8));
  return -1;
}

TEST(Threads, SixtyFourThreadsInATightLoopSurviveFiveHundredApplyRevertCycles) {
  Target t(target_path("spinners"), {"64"});
  const std::string pid = std::to_string(t.pid());
  long before = std::stol(t.ask("n"));
  for (int i = 0; i < 500; ++i) {
    CliRun a = livegraft({"apply", pid, patch_path("compute_plus2")});
    ASSERT_EQ(a.exit_code, 0) << "cycle " << i << ": " << a.err;
    if (i % 100 == 0) {
      EXPECT_EQ(t.ask("c"), "12");
    }
    CliRun r = livegraft({"revert", pid, "compute-plus2"});
    ASSERT_EQ(r.exit_code, 0) << "cycle " << i << ": " << r.err;
    if (i % 100 == 0) {
      EXPECT_EQ(t.ask("c"), "11");
    }
    ASSERT_TRUE(t.alive()) << "target died in cycle " << i;
  }
  // Still alive, still calling, and never saw a result that was neither old nor new (it exits 3).
  long after = std::stol(t.ask("n"));
  EXPECT_GT(after, before);
  EXPECT_EQ(t.ask("c"), "11");
  EXPECT_EQ(t.quit(), 0);
}

TEST(Threads, ThreadSleepingInsideTheFunctionDelaysApplyUntilItReturns) {
  Target t(target_path("sleeper"), {"1500"});
  const std::string pid = std::to_string(t.pid());
  ASSERT_EQ(livegraft({"inject", pid}).exit_code, 0);
  ASSERT_EQ(t.ask("b"), "started");
  ASSERT_TRUE(wait_for_thread_in_syscall(t.pid(), {SYS_nanosleep, SYS_clock_nanosleep}));  // inside compute()
  auto start = std::chrono::steady_clock::now();
  CliRun a = livegraft({"--json", "apply", "--timeout", "30", pid, patch_path("sleeper_fix")});
  auto waited = std::chrono::steady_clock::now() - start;
  ASSERT_EQ(a.exit_code, 0) << a.err << a.out;
  EXPECT_GT(a.json["transition"]["attempts"].get<int>(), 1) << "apply did not have to wait";
  EXPECT_GT(waited, std::chrono::milliseconds(500));
  EXPECT_EQ(t.read_line(), "done 1");  // the sleeping thread finished in the old code
  EXPECT_EQ(t.ask("c"), "2");
}

TEST(Threads, ShortTimeoutFailsNamingTheBlockedThreadAndLeavesTargetUnchanged) {
  Target t(target_path("sleeper"), {"4000"});
  const std::string pid = std::to_string(t.pid());
  ASSERT_EQ(livegraft({"inject", pid}).exit_code, 0);
  ASSERT_EQ(t.ask("b"), "started");
  ASSERT_TRUE(wait_for_thread_in_syscall(t.pid(), {SYS_nanosleep, SYS_clock_nanosleep}));  // inside compute()
  std::string maps_before = t.maps();
  CliRun a = livegraft({"apply", "--timeout", "0.3", pid, patch_path("sleeper_fix")});
  EXPECT_EQ(a.exit_code, 5) << a.err;
  EXPECT_NE(a.err.find("compute"), std::string::npos) << a.err;        // the stack names it
  EXPECT_NE(a.err.find("thread "), std::string::npos) << a.err;
  CliRun j = livegraft({"--json", "apply", "--timeout", "0.3", pid, patch_path("sleeper_fix")});
  EXPECT_EQ(j.exit_code, 5);
  ASSERT_TRUE(j.json.is_object()) << j.out;
  ASSERT_GE(j.json["blockers"].size(), 1u) << j.out;
  EXPECT_GT(j.json["blockers"][0]["tid"].get<int>(), t.pid());
  EXPECT_EQ(t.maps(), maps_before);
  EXPECT_EQ(t.ask("c"), "1");
  CliRun s = livegraft({"--json", "status", pid});
  ASSERT_EQ(s.exit_code, 0) << s.err;  // a failed status has no "patches": size() of null is 0
  ASSERT_TRUE(s.json["patches"].is_array()) << s.out;
  EXPECT_EQ(s.json["patches"].size(), 0u) << s.out;
  EXPECT_EQ(t.read_line(std::chrono::seconds(10)), "done 1");
}

TEST(Threads, TwoHundredThreads) {
  Target t(target_path("idle_threads"), {"200"});
  ASSERT_EQ(thread_count(t.pid()), 201);
  const std::string pid = std::to_string(t.pid());
  CliRun a = livegraft({"--json", "apply", pid, patch_path("compute_plus2")});
  ASSERT_EQ(a.exit_code, 0) << a.err << a.out;
  EXPECT_GE(a.json["transition"]["threads"].get<int>(), 201);
  EXPECT_EQ(t.ask("c"), "12");
  ASSERT_EQ(livegraft({"revert", pid, "compute-plus2"}).exit_code, 0);
  EXPECT_EQ(t.ask("c"), "11");
}

}  // namespace
}  // namespace lg::e2e
