// Worker threads that block SIGTRAP (HAProxy 2.6 blocks every signal but SIGPROF, SIGBUS,
// SIGFPE, SIGILL and SIGSEGV in all its threads: src/thread.c setup_extra_threads()). The
// per-thread and immediate models write each entry jump with the text_poke protocol: an int3
// first, which a thread calling the function meanwhile executes. With SIGTRAP blocked the kernel
// does not run the agent's handler: it resets SIGTRAP to the default action and the process
// dumps core (found by applying CVE-2023-40225's fix to haproxy under load: "process died
// during apply", haproxy exit status 133). Stop-the-world writes while every thread is stopped,
// with no int3: it works. (docs/field-notes.md, session 5.)
#include <gtest/gtest.h>

#include "harness.h"

namespace lg::e2e {
namespace {

TEST(StrangerSigtrap, PerThreadApplyToWorkersBlockingSigtrapIsRefusedAndTheProcessLives) {
  Target t(target_path("stranger_sigblock"));
  const std::string pid = std::to_string(t.pid());
  ASSERT_EQ(t.ask("c"), "1");
  CliRun a = livegraft({"apply", "--model", "per-thread", pid, patch_path("stranger_sigblock_fix")});
  ASSERT_TRUE(t.alive()) << "the target died during the apply: " << a.err << a.out;
  EXPECT_EQ(a.exit_code, 5) << a.err << a.out;
  EXPECT_NE(a.err.find("block SIGTRAP"), std::string::npos) << a.err;
  EXPECT_NE(a.err.find("--model stop-the-world"), std::string::npos) << a.err;
  EXPECT_EQ(t.ask("c"), "1");  // untouched
  CliRun s = livegraft({"status", pid});
  EXPECT_EQ(s.exit_code, 0) << s.err;
  EXPECT_EQ(s.out.find("stranger-sigblock-fix"), std::string::npos) << s.out;
}

TEST(StrangerSigtrap, ImmediateApplyToWorkersBlockingSigtrapIsRefusedToo) {
  Target t(target_path("stranger_sigblock"));
  const std::string pid = std::to_string(t.pid());
  CliRun a = livegraft({"apply", "--model", "immediate", pid, patch_path("stranger_sigblock_fix_immediate")});
  ASSERT_TRUE(t.alive()) << "the target died during the apply: " << a.err << a.out;
  EXPECT_EQ(a.exit_code, 5) << a.err << a.out;
  EXPECT_NE(a.err.find("block SIGTRAP"), std::string::npos) << a.err;
  EXPECT_EQ(t.ask("c"), "1");
}

TEST(StrangerSigtrap, StopTheWorldAppliesAndRevertsWhileTheWorkersRun) {
  Target t(target_path("stranger_sigblock"));
  const std::string pid = std::to_string(t.pid());
  for (int i = 0; i < 5; i++) {
    CliRun a = livegraft({"apply", "--model", "stop-the-world", pid, patch_path("stranger_sigblock_fix")});
    ASSERT_EQ(a.exit_code, 0) << a.err << a.out;
    ASSERT_TRUE(t.alive());
    EXPECT_EQ(t.ask("c"), "2");
    CliRun r = livegraft({"revert", "--model", "stop-the-world", pid, "stranger-sigblock-fix"});
    ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
    ASSERT_TRUE(t.alive());
    EXPECT_EQ(t.ask("c"), "1");
  }
}

}  // namespace
}  // namespace lg::e2e
