// C++ exceptions through an entry thunk (src/x86/entry_thunk.h). tests/programs/thunk_thrower.cpp
// is built with -fnon-call-exceptions and -fipa-ra: handle() keeps the request in %rsi across its
// call to the leaf check(). The fix throws, so it clobbers %rsi and is entered through a thunk
// that saves it; its exception must unwind through the thunk's frame (the FDE the loader adds to
// the patch's registered .eh_frame) into handle()'s catch, not end in std::terminate.
#include <gtest/gtest.h>

#include "harness.h"

namespace lg::e2e {
namespace {

uint64_t entry_thunk_of(pid_t pid) {
  CliRun s = livegraft({"--json", "status", std::to_string(pid)});
  EXPECT_EQ(s.exit_code, 0) << s.err;
  if (!s.json.is_object() || s.json["patches"].empty()) return 0;
  return s.json["patches"][0]["funcs"][0].value("entry_thunk", uint64_t{0});
}

void expect_thrown_through_the_thunk(const std::string& model) {
  Target t(target_path("thunk_thrower"));
  ASSERT_EQ(t.ask("r 3"), "mallory 3 granted");
  CliRun a = livegraft({"apply", "--model", model, std::to_string(t.pid()), patch_path("thunk_thrower_fix")});
  ASSERT_EQ(a.exit_code, 0) << a.err << a.out;
  EXPECT_NE(entry_thunk_of(t.pid()), 0u) << "the fix should need an entry thunk";
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(t.ask("r 3"), "caught level 3 refused for mallory");  // thrown, caught by the caller
    EXPECT_EQ(t.ask("r 1"), "alice 1 granted");                      // and the saved %rsi is intact
  }
  EXPECT_TRUE(t.alive());
  ASSERT_EQ(livegraft({"revert", "--model", model, std::to_string(t.pid()), "thunk-thrower-fix"}).exit_code, 0);
  EXPECT_EQ(t.ask("r 3"), "mallory 3 granted");
}

TEST(EntryThunkException, ThrownByTheReplacementUnwindsThroughTheThunkIntoTheCallersCatch) {
  expect_thrown_through_the_thunk("stop-the-world");
}

TEST(EntryThunkException, SameUnderThePerThreadModel) { expect_thrown_through_the_thunk("per-thread"); }

}  // namespace
}  // namespace lg::e2e
