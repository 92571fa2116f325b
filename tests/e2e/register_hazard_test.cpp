// GCC's -fipa-ra: a caller keeps a value in a register its leaf callee never touches. A
// replacement that clobbers it used to be refused (it crashed the demo server before the check
// existed). Now it is entered through an entry thunk that preserves those registers
// (src/x86/entry_thunk.h), with CFI so that stacks unwind through it; functions a thunk cannot
// wrap (an argument on the stack, variadic) are still refused, naming why. One that touches no
// more registers applies directly; without IPA-RA everything applies directly.
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

TEST(RegisterHazard, ReplacementClobberingRegistersACallerReliesOnRunsThroughAnEntryThunk) {
  Target t(target_path("ipa_ra"));
  ASSERT_EQ(t.ask("r 3"), "mallory 3 granted");
  CliRun r = livegraft({"apply", std::to_string(t.pid()), patch_path("ipa_ra_logging")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(entry_thunk_of(t.pid()), 0u);
  for (int i = 0; i < 3; ++i) {  // main() still finds its pointer in %rdx after the call
    EXPECT_EQ(t.ask("r 3"), "mallory 3 denied");
    EXPECT_EQ(t.ask("r 1"), "alice 1 granted");
  }
  ASSERT_EQ(livegraft({"revert", std::to_string(t.pid()), "ipa-ra-logging"}).exit_code, 0);
  EXPECT_EQ(t.ask("r 3"), "mallory 3 granted");
  EXPECT_TRUE(t.alive());
}

// The same under the per-thread model (the default outside these tests): its dispatch must send
// threads to the entry thunk, not straight to the replacement. Found in integration: it jumped
// to the replacement and the demo server died of SIGSEGV on its next request.
TEST(RegisterHazard, PerThreadDispatchGoesThroughTheEntryThunk) {
  Target t(target_path("ipa_ra"));
  ASSERT_EQ(t.ask("r 3"), "mallory 3 granted");
  CliRun r = livegraft({"apply", "--model", "per-thread", std::to_string(t.pid()), patch_path("ipa_ra_logging")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(entry_thunk_of(t.pid()), 0u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(t.ask("r 3"), "mallory 3 denied");
    EXPECT_EQ(t.ask("r 1"), "alice 1 granted");
  }
  ASSERT_EQ(livegraft({"revert", "--model", "per-thread", std::to_string(t.pid()), "ipa-ra-logging"}).exit_code, 0);
  EXPECT_EQ(t.ask("r 3"), "mallory 3 granted");
  EXPECT_TRUE(t.alive());
}

// A thread inside the replacement has the thunk's frame on its stack: the controller's stack
// walk must get through it (its FDE) to main, and name it among the blockers of a revert.
TEST(RegisterHazard, StacksUnwindThroughTheEntryThunk) {
  Target t(target_path("ipa_ra"));
  ASSERT_EQ(livegraft({"apply", std::to_string(t.pid()), patch_path("ipa_ra_blocking")}).exit_code, 0);
  ASSERT_NE(entry_thunk_of(t.pid()), 0u);
  t.send("r 3");  // the replacement now waits for one more line
  CliRun blocked = livegraft({"--json", "revert", std::to_string(t.pid()), "ipa-ra-blocking", "--timeout", "0.3"});
  EXPECT_EQ(blocked.exit_code, 5) << blocked.err << blocked.out;
  ASSERT_TRUE(blocked.json.contains("blockers")) << blocked.out;
  ASSERT_FALSE(blocked.json["blockers"].empty()) << blocked.out;
  // fgets <- the replacement (named by the function it replaces, in the patch) <- the thunk
  // (patch code, named after the patch) <- main.
  const auto& frames = blocked.json["blockers"][0]["stack"];
  std::vector<std::string> patch_frames;
  bool main_below = false;
  for (const auto& f : frames) {
    std::string s = f.get<std::string>();
    if (s.rfind("ipa-ra-blocking+", 0) == 0 || s.find(" (patch ipa-ra-blocking)") != std::string::npos)
      patch_frames.push_back(s);
    if (s.rfind("main+", 0) == 0) main_below = !patch_frames.empty();
  }
  ASSERT_EQ(patch_frames.size(), 2u) << frames.dump();
  EXPECT_EQ(patch_frames[0].rfind("check+", 0), 0u) << frames.dump();
  EXPECT_EQ(patch_frames[1].rfind("ipa-ra-blocking+", 0), 0u) << frames.dump();
  EXPECT_TRUE(main_below) << frames.dump();
  t.send("go");
  EXPECT_EQ(t.read_line(), "mallory 3 denied");
  ASSERT_EQ(livegraft({"revert", std::to_string(t.pid()), "ipa-ra-blocking"}).exit_code, 0);
  EXPECT_EQ(t.ask("r 3"), "mallory 3 granted");
}

TEST(RegisterHazard, FunctionWithAStackArgumentCannotBeWrappedAndIsRefused) {
  Target t(target_path("ipa_ra"));
  ASSERT_EQ(t.ask("m 3"), "mallory 3 granted");
  std::string before = t.maps();
  CliRun r = livegraft({"apply", std::to_string(t.pid()), patch_path("ipa_ra_many_logging")});
  EXPECT_EQ(r.exit_code, 6) << r.err;
  EXPECT_NE(r.err.find("-fipa-ra"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("'main' reads"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("on the stack"), std::string::npos) << r.err;
  EXPECT_EQ(t.maps(), before);
  EXPECT_EQ(t.ask("m 3"), "mallory 3 granted");
}

TEST(RegisterHazard, VariadicFunctionCannotBeWrappedAndIsRefused) {
  Target t(target_path("ipa_ra"));
  std::string before = t.maps();
  CliRun r = livegraft({"apply", std::to_string(t.pid()), patch_path("ipa_ra_variadic_logging")});
  EXPECT_EQ(r.exit_code, 6) << r.err;
  EXPECT_NE(r.err.find("variadic"), std::string::npos) << r.err;
  EXPECT_EQ(t.maps(), before);
  EXPECT_EQ(t.ask("v 3"), "mallory 3 granted");
}

TEST(RegisterHazard, ReplacementTouchingNoMoreRegistersApplies) {
  Target t(target_path("ipa_ra"));
  ASSERT_EQ(livegraft({"apply", std::to_string(t.pid()), patch_path("ipa_ra_quiet")}).exit_code, 0);
  EXPECT_EQ(entry_thunk_of(t.pid()), 0u);
  EXPECT_EQ(t.ask("r 3"), "mallory 3 denied");
  EXPECT_EQ(t.ask("r 1"), "alice 1 granted");
}

TEST(RegisterHazard, WithoutIpaRaTheLoggingReplacementAppliesAndWorks) {
  Target t(target_path("ipa_ra_off"));
  CliRun a = livegraft({"apply", std::to_string(t.pid()), patch_path("ipa_ra_logging")});
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(entry_thunk_of(t.pid()), 0u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(t.ask("r 3"), "mallory 3 denied");
    EXPECT_EQ(t.ask("r 2"), "bob 2 granted");
  }
}

}  // namespace
}  // namespace lg::e2e
