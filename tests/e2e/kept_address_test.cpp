// A fix whose new code keeps the address of the function it replaces: tests/programs/
// callback_self's handle() registers itself as the next callback on every call (squid's
// icpHandleUdp re-registers with its event loop), and the fix (tests/e2e/patches/
// callback_self.diff) keeps doing so. The patch must take the ORIGINAL handle's address: while
// applied, its entry leads to the new version; after a revert the kept pointer is the original
// again. Taking the patch's own address, the program would call freed code after the revert
// (squid CVE-2026-33515 crashed at the first request after one).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>

#include "harness.h"

namespace lg::e2e {
namespace {

namespace fs = std::filesystem;

class KeptAddress : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/lg-kept-address-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    src_ = dir_ + "/src";
    fs::copy(fs::path(LG_SOURCE_DIR) / "tests/programs/callback_self", src_, fs::copy_options::recursive);
    std::string out;
    ASSERT_EQ(shell("make -s -C " + src_, &out), 0) << out;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string dir_, src_;
};

TEST_P(KeptAddress, CallbackRegisteredByTheFixIsTheOriginalAndOutlivesTheRevert) {
  Target t(src_ + "/callback_self");
  EXPECT_EQ(t.ask("x"), "42 original");
  const std::string fix = dir_ + "/fix.o";
  CliRun b = livegraft({"build", "--source", src_, "--diff",
                        std::string(LG_SOURCE_DIR) + "/tests/e2e/patches/callback_self.diff", "--target",
                        "/proc/" + std::to_string(t.pid()) + "/exe", "-o", fix});
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

INSTANTIATE_TEST_SUITE_P(Models, KeptAddress, ::testing::Values("per-thread", "stop-the-world"),
                         [](const auto& info) {
                           std::string n = info.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

}  // namespace
}  // namespace lg::e2e
