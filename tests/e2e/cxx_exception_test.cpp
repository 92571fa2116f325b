// C++: a patched member function throws through patch code into an unpatched caller.
#include <gtest/gtest.h>

#include "harness.h"

namespace lg::e2e {
namespace {

TEST(CxxException, ThrownInPatchCodeCaughtByUnpatchedCaller) {
  Target t(target_path("thrower"));
  ASSERT_EQ(t.ask("p 17"), "value 17");
  ASSERT_EQ(t.ask("p -1"), "caught negative or empty: -1");
  CliRun a = livegraft({"apply", std::to_string(t.pid()), patch_path("thrower_fix")});
  ASSERT_EQ(a.exit_code, 0) << a.err << a.out;
  EXPECT_EQ(t.ask("p 17"), "value 23");  // base 16 now
  EXPECT_EQ(t.ask("p -1"), "caught patched parser refuses -1");
  EXPECT_EQ(t.ask("p -2"), "caught patched parser refuses -2");
  ASSERT_EQ(livegraft({"revert", std::to_string(t.pid()), "thrower-fix"}).exit_code, 0);
  EXPECT_EQ(t.ask("p 17"), "value 17");
  EXPECT_EQ(t.ask("p -1"), "caught negative or empty: -1");
}

}  // namespace
}  // namespace lg::e2e
