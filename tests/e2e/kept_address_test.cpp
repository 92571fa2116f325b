// A fix whose new code keeps the address of the function it replaces: tests/programs/
// callback_self's handle() registers itself as the next callback on every call (squid's
// icpHandleUdp re-registers with its event loop), and the fix (tests/e2e/patches/
// callback_self.diff) keeps doing so. The patch must take the ORIGINAL handle's address: while
// applied, its entry leads to the new version; after a revert the kept pointer is the original
// again. Taking the patch's own address, the program would call freed code after the revert
// (squid CVE-2026-33515 crashed at the first request after one).
#include <gtest/gtest.h>

#include <algorithm>

#include "harness.h"

namespace lg::e2e {
namespace {

class KeptAddress : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    src_ = build_program_tree("callback_self", dir_.path());
    ASSERT_FALSE(src_.empty());
  }
  // `livegraft build` of tests/e2e/patches/DIFF against the running [t], to dir/fix.o.
  CliRun build_fix(const Target& t, const std::string& diff, bool json = false) {
    std::vector<std::string> args{"build", "--source", src_, "--diff",
                                  std::string(LG_SOURCE_DIR) + "/tests/e2e/patches/" + diff, "--target",
                                  "/proc/" + std::to_string(t.pid()) + "/exe", "-o", fix()};
    if (json) args.push_back("--json");
    return livegraft(args);
  }
  std::string fix() const { return dir_.path() + "/fix.o"; }

  TempDir dir_{"kept-address"};
  std::string src_;
};

TEST_P(KeptAddress, CallbackRegisteredByTheFixIsTheOriginalAndOutlivesTheRevert) {
  Target t(src_ + "/callback_self");
  EXPECT_EQ(t.ask("x"), "42 original");
  const std::string fix = this->fix();
  CliRun b = build_fix(t, "callback_self.diff");
  ASSERT_EQ(b.exit_code, 0) << b.out << b.err;
  EXPECT_NE((b.out + b.err).find("ORIGINAL handle"), std::string::npos) << b.out << b.err;
  std::string readelf;
  ASSERT_EQ(shell("readelf -sW " + fix, &readelf), 0);
  EXPECT_NE(readelf.find("UND handle,0"), std::string::npos) << readelf;

  CliRun a = livegraft({"apply", std::to_string(t.pid()), fix, "--model", GetParam()});
  ASSERT_EQ(a.exit_code, 0) << a.out << a.err;
  // The fixed handle ran through the kept pointer (the original's entry) and registered the
  // original again; a pointer into the patch would print "elsewhere".
  EXPECT_EQ(t.ask("x"), "43 original");
  EXPECT_EQ(t.ask("x"), "43 original");
  CliRun r = livegraft({"revert", std::to_string(t.pid()), "fix", "--model", GetParam()});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(t.ask("x"), "42 original");
  EXPECT_TRUE(t.alive());
  // Applied again: the same reference, resolved anew.
  a = livegraft({"apply", std::to_string(t.pid()), fix, "--model", GetParam()});
  ASSERT_EQ(a.exit_code, 0) << a.out << a.err;
  EXPECT_EQ(t.ask("x"), "43 original");
}

// The fix registers a NEW function (tests/e2e/patches/callback_new.diff): there is no original
// to bind to, so the patch is flagged LIVEGRAFT_PATCH_KEEP_CODE and a revert keeps its code
// mapped. The program still holds the new handler after the revert and calls it: it answers
// (the fixed handler's answer), where an unmapped patch would kill it with SIGSEGV.
TEST_P(KeptAddress, NewFunctionRegisteredByTheFixStaysMappedAfterTheRevert) {
  Target t(src_ + "/callback_self");
  EXPECT_EQ(t.ask("x"), "42 original");
  const std::string fix = this->fix();
  CliRun b = build_fix(t, "callback_new.diff", true);
  ASSERT_EQ(b.exit_code, 0) << b.out << b.err;
  ASSERT_TRUE(b.json.is_object()) << b.out;
  EXPECT_EQ(b.json["kept_new"], nlohmann::json::array({"handle_checked"})) << b.out;

  CliRun a = livegraft({"apply", std::to_string(t.pid()), fix, "--model", GetParam()});
  ASSERT_EQ(a.exit_code, 0) << a.out << a.err;
  EXPECT_EQ(t.ask("x"), "42 elsewhere");  // the new handle registered handle_checked
  EXPECT_EQ(t.ask("x"), "43 elsewhere");  // which answers
  CliRun r = livegraft({"revert", std::to_string(t.pid()), "fix", "--model", GetParam()});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  CliRun s = livegraft({"--json", "status", std::to_string(t.pid())});
  ASSERT_EQ(s.exit_code, 0) << s.out << s.err;
  EXPECT_TRUE(s.json["patches"].empty()) << s.out;
  // Still mapped: the agent keeps it and lists it, with its regions, for the unwinder.
  ASSERT_TRUE(s.json["kept"].is_array()) << s.out;
  ASSERT_EQ(s.json["kept"].size(), 1u) << s.out;
  EXPECT_EQ(s.json["kept"][0]["name"], "fix") << s.out;
  EXPECT_FALSE(s.json["kept"][0]["regions"].empty()) << s.out;
  EXPECT_EQ(t.ask("x"), "43 elsewhere");  // the kept pointer still runs
  EXPECT_TRUE(t.alive());
}

INSTANTIATE_TEST_SUITE_P(Models, KeptAddress, ::testing::Values("per-thread", "stop-the-world"),
                         [](const auto& info) {
                           std::string n = info.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

}  // namespace
}  // namespace lg::e2e
