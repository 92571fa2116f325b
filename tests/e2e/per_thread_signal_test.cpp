// The per-thread model and signal handlers (docs/consistency.md, "Tests"): a thread interrupted
// inside a patched function whose handler runs (and calls the patched function too) keeps the
// interrupted frames on its stack: it stays pending until it has left them, and its handler's
// calls run the versions of its universe.
#include <gtest/gtest.h>
#include <sys/syscall.h>

#include <future>

#include "per_thread_support.h"

namespace lg::e2e {
namespace {

using namespace std::chrono_literals;

TEST(PerThreadSignal, HandlerRunningAboveAnInterruptedOldFunctionKeepsTheThreadPending) {
  Target t(target_path("pt_hazards"));
  const std::string pid = std::to_string(t.pid());
  ASSERT_EQ(t.ask("b"), "started");
  ASSERT_TRUE(wait_for_thread_in_syscall(t.pid(), {SYS_read}));  // inside old outer()
  // Its handler now blocks in the handler itself: the top of its stack is clean, the old
  // outer() lies below the signal frame.
  ASSERT_EQ(t.ask("s"), "in handler");
  CliRun k = pt({"--json", "apply", "--timeout", "0.5", "--on-timeout", "keep", pid, patch_path("pt_pair_fix")});
  ASSERT_EQ(k.exit_code, 5) << "the transition finished with old outer() below a signal frame: " << k.err << k.out;
  bool outer_blocks = false;
  for (const auto& b : k.json["blockers"])
    if (b["reason"].get<std::string>().find("outer") != std::string::npos) outer_blocks = true;
  EXPECT_TRUE(outer_blocks) << "the pending thread is not held by outer(): " << k.out;
  EXPECT_EQ(t.ask("c"), "220");  // the main thread switched
  CliRun s = livegraft({"--json", "status", pid});
  ASSERT_EQ(s.exit_code, 0) << s.err;
  ASSERT_TRUE(s.json["transition"].is_object()) << s.out;
  bool outer_named = false;
  for (const auto& p : s.json["transition"]["threads"]["pending"])
    if (p["reason"].get<std::string>().find("outer") != std::string::npos) outer_named = true;
  EXPECT_TRUE(outer_named) << "status does not name outer(): " << s.out;
  auto apply = std::async(std::launch::async, [&] { return pt({"--json", "apply", "--timeout", "60", pid, patch_path("pt_pair_fix")}); });
  EXPECT_EQ(apply.wait_for(300ms), std::future_status::timeout) << "the continued transition finished with old outer() below a signal frame";
  // The handler calls outer() from the old universe: old outer + old inner.
  t.send("h");
  EXPECT_EQ(t.read_line(), "handler 110");
  EXPECT_EQ(apply.wait_for(300ms), std::future_status::timeout) << "the interrupted old outer() is still on the stack";
  t.send("r");  // it returns from the old outer(), whose call to inner() reaches the old inner()
  EXPECT_EQ(t.read_line(), "done 110");
  CliRun a = apply.get();
  ASSERT_EQ(a.exit_code, 0) << a.err << a.out;
  EXPECT_EQ(a.json["continued"], "apply") << a.out;
  EXPECT_EQ(t.ask("c"), "220");
  EXPECT_EQ(t.quit(), 0);
}

// The handler runs in a thread already switched: its calls run the new versions; and a
// thread interrupted inside the new outer() while the patch is reverted stays in the new code.
TEST(PerThreadSignal, HandlerCallsRunTheVersionsOfItsThreadsUniverse) {
  Target t(target_path("pt_hazards"));
  const std::string pid = std::to_string(t.pid());
  ASSERT_EQ(pt({"apply", pid, patch_path("pt_pair_fix")}).exit_code, 0);
  ASSERT_EQ(t.ask("b"), "started");
  ASSERT_TRUE(wait_for_thread_in_syscall(t.pid(), {SYS_read}));  // inside new outer()
  ASSERT_EQ(t.ask("s"), "in handler");
  auto revert = std::async(std::launch::async, [&] { return pt({"--json", "revert", "--timeout", "60", pid, "pt-pair-fix"}); });
  wait_for_answer(t, "220", "110");
  EXPECT_EQ(revert.wait_for(300ms), std::future_status::timeout);
  t.send("h");
  EXPECT_EQ(t.read_line(), "handler 220");
  t.send("r");
  EXPECT_EQ(t.read_line(), "done 220");
  CliRun r = revert.get();
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  EXPECT_EQ(t.ask("c"), "110");
  EXPECT_EQ(t.quit(), 0);
}

}  // namespace
}  // namespace lg::e2e
