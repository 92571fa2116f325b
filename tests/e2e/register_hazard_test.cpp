// GCC's -fipa-ra: a caller keeps a value in a register its leaf callee never touches. A
// replacement that clobbers it must be refused (it crashed the demo server before the check
// existed); one that touches no more registers applies; without IPA-RA both apply.
#include <gtest/gtest.h>

#include "harness.h"

namespace lg::e2e {
namespace {

TEST(RegisterHazard, ReplacementClobberingRegistersACallerReliesOnIsRefused) {
  Target t(target_path("ipa_ra"));
  ASSERT_EQ(t.ask("r 3"), "mallory 3 granted");
  std::string before = t.maps();
  CliRun r = livegraft({"apply", std::to_string(t.pid()), patch_path("ipa_ra_logging")});
  EXPECT_EQ(r.exit_code, 6) << r.err;
  EXPECT_NE(r.err.find("-fipa-ra"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("'main' reads"), std::string::npos) << r.err;
  EXPECT_EQ(t.maps(), before);
  EXPECT_EQ(t.ask("r 3"), "mallory 3 granted");
}

TEST(RegisterHazard, ReplacementTouchingNoMoreRegistersApplies) {
  Target t(target_path("ipa_ra"));
  ASSERT_EQ(livegraft({"apply", std::to_string(t.pid()), patch_path("ipa_ra_quiet")}).exit_code, 0);
  EXPECT_EQ(t.ask("r 3"), "mallory 3 denied");
  EXPECT_EQ(t.ask("r 1"), "alice 1 granted");
}

TEST(RegisterHazard, WithoutIpaRaTheLoggingReplacementAppliesAndWorks) {
  Target t(target_path("ipa_ra_off"));
  CliRun a = livegraft({"apply", std::to_string(t.pid()), patch_path("ipa_ra_logging")});
  ASSERT_EQ(a.exit_code, 0) << a.err;
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(t.ask("r 3"), "mallory 3 denied");
    EXPECT_EQ(t.ask("r 2"), "bob 2 granted");
  }
}

}  // namespace
}  // namespace lg::e2e
