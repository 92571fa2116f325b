// Objects replaced on disk: after a package upgrade a running process maps "(deleted)" files.
// The patch's target library must still be found — by the mapping itself
// (/proc/PID/map_files), not by its path, which is gone or names another build — and status
// must say that the object is deleted.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdio>
#include <filesystem>

#include "harness.h"

namespace lg::e2e {
namespace {

namespace fs = std::filesystem;

class DeletedObject : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/lg-deleted-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    lib_ = dir_ + "/libvictim.so";
    fs::copy_file(target_path("libvictim.so"), lib_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  // Starts victim with the library copy of the test (LD_LIBRARY_PATH wins over the RUNPATH).
  std::unique_ptr<Target> start() {
    auto t = std::make_unique<Target>(target_path("victim"), std::vector<std::string>{},
                                      std::vector<std::string>{"LD_LIBRARY_PATH=" + dir_});
    EXPECT_NE(t->maps().find(lib_), std::string::npos) << t->maps();
    return t;
  }
  void expect_patched(Target& t) {
    EXPECT_EQ(t.ask("v 4"), "41");
    EXPECT_NE(t.maps().find(lib_ + " (deleted)"), std::string::npos) << t.maps();
    CliRun r = livegraft({"apply", std::to_string(t.pid()), patch_path("victim_fix")});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("(deleted)"), std::string::npos) << r.out;
    EXPECT_EQ(t.ask("v 4"), "46");
    EXPECT_EQ(t.ask("o 3"), "ok");
    EXPECT_EQ(t.ask("v 4"), "48");  // the patch reads the library's live static
    CliRun s = livegraft({"--json", "status", std::to_string(t.pid())});
    ASSERT_EQ(s.exit_code, 0) << s.err;
    ASSERT_EQ(s.json["patches"].size(), 1u) << s.out;
    EXPECT_EQ(s.json["patches"][0].value("object_path", ""), lib_ + " (deleted)") << s.out;
    CliRun back = livegraft({"revert", std::to_string(t.pid()), "victim-fix"});
    ASSERT_EQ(back.exit_code, 0) << back.err;
    EXPECT_EQ(t.ask("v 4"), "43");
  }

  std::string dir_, lib_;
};

TEST_F(DeletedObject, LibraryDeletedAfterStartIsPatchedThroughItsMapping) {
  auto t = start();
  ASSERT_EQ(std::remove(lib_.c_str()), 0);
  expect_patched(*t);
}

// What an upgrade does: a different build renamed over the path. The path now names a file
// with another build-id; the process still runs the old one, which is what must be patched.
TEST_F(DeletedObject, LibraryReplacedByAnotherBuildIsPatchedAsMapped) {
  auto t = start();
  std::string next = dir_ + "/libvictim.so.new";
  fs::copy_file(target_path("v2/libvictim.so"), next);
  ASSERT_EQ(std::rename(next.c_str(), lib_.c_str()), 0);
  expect_patched(*t);
}

}  // namespace
}  // namespace lg::e2e
