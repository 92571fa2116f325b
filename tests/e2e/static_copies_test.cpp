// Two files with their own copy of one header's statics (tests/programs/static_copies: counter.h
// defines `static int counter` and `static void bump(int)`, included by a.c and b.c). The fix of
// b.c's b_step (tests/e2e/patches/static_copies_b.diff: bump(10) -> bump(1000)), built with
// `livegraft build`, must stay bound to b.c's counter and bump: definitions #2 of those names in
// the program. Bound to a.c's by mistake, a.c's counter would jump by 1000 and b.c's stop.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "harness.h"

namespace lg::e2e {
namespace {

namespace fs = std::filesystem;

class StaticCopies : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = tmp_.path();
    src_ = build_program_tree("static_copies", dir_);
    ASSERT_FALSE(src_.empty());
    exe_ = src_ + "/static_copies";
  }

  // Builds the fix against the running [t], applies it, checks which copies it uses, reverts.
  void patch_and_check(Target& t, const std::vector<std::string>& symbols_args) {
    EXPECT_EQ(t.ask("x"), "a=1 b=10");
    EXPECT_EQ(t.ask("x"), "a=2 b=20");
    const std::string fix = dir_ + "/fix.o";
    std::vector<std::string> build{"build", "--source", src_, "--diff",
                                   std::string(LG_SOURCE_DIR) + "/tests/e2e/patches/static_copies_b.diff",
                                   "--target", "/proc/" + std::to_string(t.pid()) + "/exe", "-o", fix, "--json"};
    build.insert(build.end(), symbols_args.begin(), symbols_args.end());
    CliRun b = livegraft(build);
    ASSERT_EQ(b.exit_code, 0) << b.out << b.err;
    // The patch names b.c's copies by their position among same-named symbols (#2: after a.c's).
    std::string readelf;
    ASSERT_EQ(shell("readelf -sW " + fix, &readelf), 0);
    EXPECT_NE(readelf.find("UND counter,2"), std::string::npos) << readelf;
    EXPECT_NE(readelf.find("UND bump,2"), std::string::npos) << readelf;

    CliRun a = livegraft({"apply", std::to_string(t.pid()), fix, "--model", "stop-the-world"});
    ASSERT_EQ(a.exit_code, 0) << a.out << a.err;
    // b.c's counter: 20 + 1000; a.c's keeps counting by 1 (bound to a.c's, a would be 1003
    // and b would stay 20).
    EXPECT_EQ(t.ask("x"), "a=3 b=1020");
    EXPECT_EQ(t.ask("x"), "a=4 b=2020");
    CliRun r = livegraft({"revert", std::to_string(t.pid()), "fix", "--model", "stop-the-world"});
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_EQ(t.ask("x"), "a=5 b=2030");
  }

  TempDir tmp_{"static-copies"};
  std::string dir_, src_, exe_;
};

TEST_F(StaticCopies, FixOfOneFileUsesThatFilesCopyOfAHeaderStatic) {
  Target t(exe_);
  patch_and_check(t, {});
}

// Stripped, with its debug file: the builder (--symbols) and the controller (apply finds it by
// build-id under LIVEGRAFT_DEBUG_ROOT) count positions in the same table, the debug file's.
TEST_F(StaticCopies, StrippedTargetWithDebugFileBindsTheSameCopy) {
  std::string out;
  const std::string debug = dir_ + "/static_copies.debug";
  ASSERT_EQ(shell("objcopy --only-keep-debug " + exe_ + " " + debug + " && strip --strip-all " + exe_, &out), 0) << out;
  ASSERT_EQ(shell("readelf -n " + exe_ + " | awk '/Build ID/ {print $3}'", &out), 0);
  std::string id = out.substr(0, out.find('\n'));
  ASSERT_GT(id.size(), 2u);
  fs::path root = dir_ + "/debug-root";
  fs::path at = root / ".build-id" / id.substr(0, 2) / (id.substr(2) + ".debug");
  fs::create_directories(at.parent_path());
  fs::copy_file(debug, at);
  ::setenv("LIVEGRAFT_DEBUG_ROOT", root.c_str(), 1);
  ::unsetenv("DEBUGINFOD_URLS");
  Target t(exe_);
  patch_and_check(t, {"--symbols", debug});
  ::unsetenv("LIVEGRAFT_DEBUG_ROOT");
}

}  // namespace
}  // namespace lg::e2e
