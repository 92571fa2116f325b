// New code that uses a library's global data, compiled -fPIE as projects build executables:
// `stderr`, an errno-style global of a library, a std:: exception type the program never threw.
// The compiler reaches them PC-relatively for a copy relocation no linker made; they lie in
// libraries out of +-2 GiB of the patch. The loader rewrites those loads and address
// computations through GOT slots (src/x86/data_reference.h); a store is refused before the
// process is touched.
#include <gtest/gtest.h>

#include "harness.h"

namespace lg::e2e {
namespace {

TEST(ExternalData, StderrFromPieCodeInAnExecutableWithoutACopyOfIt) {
  Target t(target_path("calc"));
  ASSERT_EQ(t.ask("c 4"), "41");
  CliRun r = livegraft({"apply", std::to_string(t.pid()), patch_path("calc_stderr")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(t.ask("c 4"), "43");  // fileno(stderr) == 2: the real stderr was read
  EXPECT_EQ(t.ask("c 5"), "53");
  ASSERT_EQ(livegraft({"revert", std::to_string(t.pid()), "calc-stderr"}).exit_code, 0);
  EXPECT_EQ(t.ask("c 4"), "41");
}

TEST(ExternalData, ErrnoStyleGlobalOfALibraryIsReadAndItsAddressTaken) {
  Target t(target_path("victim"));
  ASSERT_EQ(t.ask("e -3"), "-29");
  CliRun r = livegraft({"apply", std::to_string(t.pid()), patch_path("victim_errno")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(t.ask("e -3"), "2971");  // -29 + 1000 * victim_errno (3), and &victim_errno is right
  EXPECT_EQ(t.ask("e 2"), "3021");
  EXPECT_EQ(t.ask("e -7"), "6931");
  EXPECT_TRUE(t.alive());
}

TEST(ExternalData, NewExceptionTypeThrownFromPieCode) {
  Target t(target_path("thrower"));
  ASSERT_EQ(t.ask("p -1"), "caught negative or empty: -1");
  CliRun r = livegraft({"apply", std::to_string(t.pid()), patch_path("thrower_fix_pie")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(t.ask("p 17"), "value 23");
  EXPECT_EQ(t.ask("p -1"), "caught patched parser refuses -1");  // std::out_of_range's typeinfo
  EXPECT_EQ(t.ask("p -2"), "caught patched parser refuses -2");
  ASSERT_EQ(livegraft({"revert", std::to_string(t.pid()), "thrower-fix"}).exit_code, 0);
  EXPECT_EQ(t.ask("p -1"), "caught negative or empty: -1");
}

// A store with an immediate (movl $0, victim_errno(%rip)) and a load feeding a compare: the
// generic rewrite, through a scratch register saved below the red zone.
TEST(ExternalData, StoreToAndCompareWithFarDataGoThroughAScratchRegister) {
  Target t(target_path("victim"));
  ASSERT_EQ(t.ask("e -3"), "-29");
  CliRun r = livegraft({"apply", std::to_string(t.pid()), patch_path("victim_errno_store")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(t.ask("e -3"), "271");   // -29 + 100 * 3
  EXPECT_EQ(t.ask("e 5"), "51");     // victim_errno cleared by the patch's store
  EXPECT_EQ(t.ask("e -4"), "4444");  // victim_errno == 4
  EXPECT_TRUE(t.alive());
}

// call *victim_hook(%rip): a branch through far data cannot go through the thunk.
TEST(ExternalData, CallThroughFarFunctionPointerIsRefusedBeforeTheProcessIsTouched) {
  Target t(target_path("victim"));
  std::string before = t.maps();
  CliRun r = livegraft({"apply", std::to_string(t.pid()), patch_path("victim_hook_call")});
  EXPECT_EQ(r.exit_code, 6) << r.err;
  EXPECT_NE(r.err.find("'victim_hook'"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("`call`"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("-fPIC"), std::string::npos) << r.err;
  EXPECT_EQ(t.maps(), before);  // no agent injected
  EXPECT_EQ(t.ask("e -3"), "-29");
}

}  // namespace
}  // namespace lg::e2e
