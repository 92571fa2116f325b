// What livegraft prints while it waits, for people: the stop-the-world "waiting:" line names the
// blocking thread and what holds it, as the per-thread one does. (Seen on memcached: "waiting: 1
// thread(s) have an affected function on the stack (attempt 10)", and nothing said which.)
#include <gtest/gtest.h>

#include "harness.h"

namespace lg::e2e {
namespace {

TEST(ProgressWording, StopTheWorldWaitingLineNamesTheBlockingThread) {
  Target t(target_path("pt_pair"));
  const std::string pid = std::to_string(t.pid());
  ASSERT_EQ(t.ask("b"), "started");  // a thread stays inside outer(), which the patch changes
  CliRun a = livegraft({"apply", "--model", "stop-the-world", "--timeout", "0.5", pid, patch_path("pt_pair_fix")});
  ASSERT_EQ(a.exit_code, 5) << a.err << a.out;
  const size_t line = a.err.find("waiting: 1 thread(s) have an affected function on the stack (attempt 1) (thread ");
  ASSERT_NE(line, std::string::npos) << a.err;
  const std::string text = a.err.substr(line, a.err.find('\n', line) - line);
  EXPECT_NE(text.find("outer+"), std::string::npos) << text;
  EXPECT_NE(text.find("is on its stack)"), std::string::npos) << text;
  EXPECT_EQ(t.ask("c"), "110");  // nothing was changed
  t.send("r");
  EXPECT_EQ(t.read_line(), "done 110");
}

// A revert waits for a thread inside the replacement: the waiting line names the function it
// replaces, in the patch ("outer+0x.. (patch pt-pair-fix)"), where it said "pt-pair-fix+0x1dd2"
// (seen on memcached), an offset into the patch nobody can read.
TEST(ProgressWording, BlockerInsideAReplacementIsNamedByTheFunctionItReplaces) {
  Target t(target_path("pt_pair"));
  const std::string pid = std::to_string(t.pid());
  CliRun a = livegraft({"apply", "--model", "stop-the-world", pid, patch_path("pt_pair_fix")});
  ASSERT_EQ(a.exit_code, 0) << a.err << a.out;
  ASSERT_EQ(t.ask("b"), "started");  // a thread stays inside the new outer()
  CliRun r = livegraft({"revert", "--model", "stop-the-world", "--timeout", "0.5", pid, "pt-pair-fix"});
  ASSERT_EQ(r.exit_code, 5) << r.err << r.out;
  const size_t line = r.err.find("waiting: 1 thread(s)");
  ASSERT_NE(line, std::string::npos) << r.err;
  const std::string text = r.err.substr(line, r.err.find('\n', line) - line);
  EXPECT_NE(text.find("outer+"), std::string::npos) << text;
  EXPECT_NE(text.find("(patch pt-pair-fix) is on its stack"), std::string::npos) << text;
  t.send("r");
  EXPECT_EQ(t.read_line(), "done 220");  // still the new version: the revert was not done
}

// The thread's start function itself is patched (memcached's lru_maintainer_thread): the thread
// never leaves it, so "raise --timeout" would be wrong advice; the hint says what can be done.
// A thread that is merely inside a patched function (outer(), called by its start function)
// still gets "retry later, or raise --timeout".
TEST(ProgressWording, ThreadThatNeverLeavesThePatchedFunctionIsNamedInTheHint) {
  Target t(target_path("pt_loop"), {"0"});
  const std::string pid = std::to_string(t.pid());
  CliRun a = livegraft({"--json", "apply", "--model", "stop-the-world", "--timeout", "0.5", pid,
                        patch_path("pt_loop_start_fix")});
  ASSERT_EQ(a.exit_code, 5) << a.err << a.out;
  const std::string hint = a.json.value("hint", "");
  EXPECT_NE(hint.find("never leaves loop"), std::string::npos) << a.out;
  EXPECT_NE(hint.find("--on-timeout keep"), std::string::npos) << a.out;
  EXPECT_NE(hint.find("livegraft force"), std::string::npos) << a.out;
  EXPECT_EQ(hint.find("raise --timeout"), std::string::npos) << a.out;
  EXPECT_EQ(t.ask("v"), "1");  // nothing was changed

  Target p(target_path("pt_pair"));
  ASSERT_EQ(p.ask("b"), "started");
  CliRun b = livegraft({"--json", "apply", "--model", "stop-the-world", "--timeout", "0.5", std::to_string(p.pid()),
                        patch_path("pt_pair_fix")});
  ASSERT_EQ(b.exit_code, 5) << b.err << b.out;
  EXPECT_NE(b.json.value("hint", "").find("raise --timeout"), std::string::npos) << b.out;
  p.send("r");
  EXPECT_EQ(p.read_line(), "done 110");
}

// The per-thread progress line says what holds the transition once, and again only when that
// changes or 5 s later (it was repeated every tenth round, about twice a second).
TEST(ProgressWording, PerThreadWaitingLineIsNotRepeatedWhileTheSameThreadHoldsTheTransition) {
  Target p(target_path("pt_pair"));
  ASSERT_EQ(p.ask("b"), "started");
  CliRun a = livegraft({"apply", "--model", "per-thread", "--timeout", "3", std::to_string(p.pid()), patch_path("pt_pair_fix")});
  ASSERT_EQ(a.exit_code, 5) << a.err;
  size_t lines = 0;
  for (size_t at = a.err.find("waiting: "); at != std::string::npos; at = a.err.find("waiting: ", at + 1)) ++lines;
  EXPECT_EQ(lines, 1u) << a.err;
  EXPECT_NE(a.err.find("outer"), std::string::npos) << a.err;
  p.send("r");
  EXPECT_EQ(p.read_line(), "done 110");
}

// The same advice after a per-thread apply timed out and was reversed.
TEST(ProgressWording, PerThreadTimeoutOfAThreadThatNeverLeavesNamesItInTheHint) {
  Target t(target_path("pt_loop"), {"0"});
  CliRun a = livegraft({"--json", "apply", "--model", "per-thread", "--timeout", "0.5", std::to_string(t.pid()),
                        patch_path("pt_loop_start_fix")});
  ASSERT_EQ(a.exit_code, 5) << a.err << a.out;
  const std::string hint = a.json.value("hint", "");
  EXPECT_NE(hint.find("never leaves loop"), std::string::npos) << a.out;
  EXPECT_NE(hint.find("--on-timeout keep"), std::string::npos) << a.out;
  EXPECT_EQ(hint.find("raise --timeout"), std::string::npos) << a.out;
  EXPECT_EQ(t.ask("v"), "1");  // reversed: as it was
}

}  // namespace
}  // namespace lg::e2e
