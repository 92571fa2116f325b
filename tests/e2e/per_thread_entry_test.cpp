// Writing the entry jumps of a per-thread apply (docs/consistency.md, "Writing the entry
// jumps"): a thread parked inside the first bytes of a patched function keeps the jump from
// being written, while the threads seen outside switch at once (an entry that is an int3 so far
// traps to its stub, which dispatches). On --timeout the apply is reversed from there and the
// int3s are taken away; with --on-timeout keep it stays in progress for the next command.
#include <gtest/gtest.h>
#include <sys/syscall.h>

#include "harness.h"
#include "per_thread_support.h"

namespace lg::e2e {
namespace {

TEST(PerThreadEntry, ThreadInsideTheEntryDelaysTheJumpAndTheTimeoutReversesTheApply) {
  Target t(target_path("entry_sleeper"));
  const std::string pid = std::to_string(t.pid());
  ASSERT_EQ(t.ask("g"), "old");
  ASSERT_EQ(t.ask("p"), "started");
  ASSERT_TRUE(wait_for_thread_in_syscall(t.pid(), {SYS_pause}));
  CliRun a = pt({"--json", "apply", "--timeout", "1", pid, patch_path("entry_sleeper_fix")});
  EXPECT_EQ(a.exit_code, 5) << a.err << a.out;
  EXPECT_NE(a.out.find("reversed: the process is as it was"), std::string::npos) << a.out;
  // Nothing is left: no transition, no patch, no int3 (the main thread runs the syscall again).
  ASSERT_TRUE(t.alive());
  EXPECT_EQ(t.ask("g"), "old");
  CliRun s = livegraft({"--json", "status", pid});
  EXPECT_EQ(s.json["transition"], nullptr) << s.out;
  EXPECT_EQ(s.json["patches"].size(), 0u) << s.out;
  uint64_t traps = s.json.value("trap_redirects", 0ull);
  EXPECT_EQ(t.ask("g"), "old");
  EXPECT_EQ(livegraft({"--json", "status", pid}).json.value("trap_redirects", 0ull), traps) << "an int3 is still on gate_wait";
  // Once the thread has left, the same apply goes through.
  EXPECT_EQ(t.ask("r"), "released");
  CliRun b = pt({"--json", "apply", "--timeout", "20", pid, patch_path("entry_sleeper_fix")});
  ASSERT_EQ(b.exit_code, 0) << b.err << b.out;
  EXPECT_EQ(t.ask("g"), "new");
  EXPECT_EQ(pt({"revert", "--timeout", "20", pid, "entry-sleeper-fix"}).exit_code, 0);
  EXPECT_EQ(t.ask("g"), "old");
  EXPECT_EQ(t.quit(), 0);
}

TEST(PerThreadEntry, KeptInProgressTheOtherThreadsRunTheNewCodeThroughTheInt3AndTheNextApplyWritesTheJump) {
  Target t(target_path("entry_sleeper"));
  const std::string pid = std::to_string(t.pid());
  ASSERT_EQ(t.ask("p"), "started");
  ASSERT_TRUE(wait_for_thread_in_syscall(t.pid(), {SYS_pause}));
  CliRun a = pt({"--json", "apply", "--timeout", "1", "--on-timeout", "keep", pid, patch_path("entry_sleeper_fix")});
  ASSERT_EQ(a.exit_code, 5) << a.err << a.out;
  CliRun s = livegraft({"--json", "status", pid});
  ASSERT_TRUE(s.json["transition"].is_object()) << s.out;
  EXPECT_EQ(s.json["transition"].value("phase", ""), "poking") << s.out;
  // The main thread was seen outside the entry and switched: its call traps on the int3 and
  // its stub sends it to the new version.
  uint64_t traps = s.json.value("trap_redirects", 0ull);
  EXPECT_EQ(t.ask("g"), "new");
  EXPECT_GT(livegraft({"--json", "status", pid}).json.value("trap_redirects", 0ull), traps);
  // Nothing can be forced before the jumps are written.
  CliRun f = livegraft({"force", pid});
  EXPECT_NE(f.exit_code, 0);
  EXPECT_NE(f.err.find("has not written its entry jumps yet"), std::string::npos) << f.err;
  // The parked thread leaves through the old code (its syscall returns where it was) and the
  // next apply writes the jump and completes.
  EXPECT_EQ(t.ask("r"), "released");
  CliRun b = pt({"--json", "apply", "--timeout", "20", pid, patch_path("entry_sleeper_fix")});
  ASSERT_EQ(b.exit_code, 0) << b.err << b.out;
  EXPECT_EQ(livegraft({"--json", "status", pid}).json["transition"], nullptr);
  traps = livegraft({"--json", "status", pid}).json.value("trap_redirects", 0ull);
  EXPECT_EQ(t.ask("g"), "new");
  EXPECT_EQ(livegraft({"--json", "status", pid}).json.value("trap_redirects", 0ull), traps) << "the entry is still an int3";
  EXPECT_EQ(t.quit(), 0);
}

}  // namespace
}  // namespace lg::e2e
