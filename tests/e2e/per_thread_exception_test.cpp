// C++ exceptions during a per-thread transition (docs/consistency.md, "Tests"): while a thread
// blocked inside the old Parser::parse holds the transition open, the other threads throw
// through the new code and the blocked one, once released, throws through the old code; each
// is caught by the unpatched caller. The same backwards for a revert.
#include <gtest/gtest.h>
#include <sys/syscall.h>

#include <future>

#include "per_thread_support.h"

namespace lg::e2e {
namespace {

using namespace std::chrono_literals;

// Asks "p -1" until the new parser answers; every answer before must be the old one.
void wait_for_parser(Target& t, const std::string& before, const std::string& want) {
  auto deadline = std::chrono::steady_clock::now() + 30s;
  for (;;) {
    std::string v = t.ask("p -1");
    if (v == want) return;
    ASSERT_EQ(v, before);
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the main thread never switched";
    std::this_thread::sleep_for(5ms);
  }
}

TEST(PerThreadException, ThrownThroughOldAndNewCodeWhileTheTransitionRuns) {
  Target t(target_path("pt_thrower"));
  const std::string pid = std::to_string(t.pid());
  const std::string old_refusal = "caught negative or empty: -1", new_refusal = "caught patched parser refuses -1";
  ASSERT_EQ(t.ask("p 17"), "value 17");
  ASSERT_EQ(t.ask("b"), "started");
  ASSERT_TRUE(wait_for_thread_in_syscall(t.pid(), {SYS_read}));  // inside the old Parser::parse
  auto apply = std::async(std::launch::async, [&] { return pt({"--json", "apply", "--timeout", "60", pid, patch_path("pt_thrower_fix")}); });
  wait_for_parser(t, old_refusal, new_refusal);
  // The transition is still open; the main thread throws through the new code again and again.
  for (int i = 0; i < 20; ++i) ASSERT_EQ(t.ask("p -" + std::to_string(i + 2)), "caught patched parser refuses -" + std::to_string(i + 2));
  EXPECT_EQ(t.ask("p 17"), "value 23");
  EXPECT_EQ(apply.wait_for(200ms), std::future_status::timeout) << "the transition finished with a thread inside the old parse";
  // The blocked thread throws from the old parse, through its old frames, during the transition.
  t.send("r");
  EXPECT_EQ(t.read_line(), "thread: caught old parser released");
  CliRun a = apply.get();
  ASSERT_EQ(a.exit_code, 0) << a.err << a.out;
  EXPECT_EQ(a.json["transition"]["max_stopped_threads"].get<int>(), 1) << a.out;
  EXPECT_EQ(t.ask("p -1"), new_refusal);

  // Reverting while a thread is blocked inside the new parse: it throws through the patch's
  // code (its unwind information still registered) after the others went back.
  ASSERT_EQ(t.ask("b"), "started");
  ASSERT_TRUE(wait_for_thread_in_syscall(t.pid(), {SYS_read}));
  auto revert = std::async(std::launch::async, [&] { return pt({"--json", "revert", "--timeout", "60", pid, "pt-thrower-fix"}); });
  wait_for_parser(t, new_refusal, old_refusal);
  EXPECT_EQ(revert.wait_for(200ms), std::future_status::timeout);
  t.send("r");
  EXPECT_EQ(t.read_line(), "thread: caught new parser released");
  CliRun r = revert.get();
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  EXPECT_EQ(t.ask("p -1"), old_refusal);
  EXPECT_EQ(t.ask("p 17"), "value 17");
  EXPECT_EQ(t.quit(), 0);
}

}  // namespace
}  // namespace lg::e2e
