// Stack switching nobody detected or declared (docs/consistency.md, "Stack switching"): a
// thread parked on a stack the program switched to by itself unwinds completely, while its own
// stack holds the old outer(). Both models keep it from switching (off_own_stack); with
// --allow-stack-switching the apply goes through and the thread mixes versions, which shows
// what the check prevents.
#include <gtest/gtest.h>
#include <sys/syscall.h>

#include "harness.h"

namespace lg::e2e {
namespace {

class HandStack : public ::testing::TestWithParam<std::string> {};

TEST_P(HandStack, ThreadParkedOnAStackItSwitchedToHoldsTheTransition) {
  Target t(target_path("hand_stack"));
  const std::string pid = std::to_string(t.pid());
  ASSERT_EQ(t.ask("c"), "110");
  ASSERT_EQ(t.ask("b"), "started");
  ASSERT_TRUE(wait_for_thread_in_syscall(t.pid(), {SYS_read}));
  CliRun a = livegraft({"--json", "apply", "--model", GetParam(), "--timeout", "1", pid, patch_path("pt_pair_fix")});
  EXPECT_NE(a.exit_code, 0) << a.out;
  EXPECT_NE(a.out.find("not on its own stack"), std::string::npos) << a.out << a.err;
  EXPECT_EQ(t.ask("c"), "110");
  t.send("r");
  EXPECT_EQ(t.read_line(), "done 110");
  // Once the thread is back on its own stack the same apply goes through.
  CliRun b = livegraft({"apply", "--model", GetParam(), "--timeout", "20", pid, patch_path("pt_pair_fix")});
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_EQ(t.ask("c"), "220");
  EXPECT_EQ(t.quit(), 0);
}

TEST_P(HandStack, AllowStackSwitchingLetsItThroughAndTheParkedThreadMixesVersions) {
  Target t(target_path("hand_stack"));
  const std::string pid = std::to_string(t.pid());
  ASSERT_EQ(t.ask("b"), "started");
  ASSERT_TRUE(wait_for_thread_in_syscall(t.pid(), {SYS_read}));
  CliRun a = livegraft({"apply", "--model", GetParam(), "--allow-stack-switching", "--timeout", "20", pid, patch_path("pt_pair_fix")});
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(t.ask("c"), "220");
  t.send("r");
  EXPECT_EQ(t.read_line(), "done 120");  // the old outer() calls the new inner()
  EXPECT_EQ(t.quit(), 0);
}

INSTANTIATE_TEST_SUITE_P(Models, HandStack, ::testing::Values("stop-the-world", "per-thread"),
                         [](const auto& info) { return info.param == "per-thread" ? std::string("PerThread") : std::string("StopTheWorld"); });

}  // namespace
}  // namespace lg::e2e
