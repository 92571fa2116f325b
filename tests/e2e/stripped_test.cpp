// Stripped binaries, as distributions ship them: the target's .symtab lives in a separate debug
// file (objcopy --only-keep-debug, then strip). calc_fix replaces the non-exported compute() and
// uses the static scale and bump(): none of them is in .dynsym, so the apply only works when
// livegraft finds the debug file — under a debug root by build-id, through .gnu_debuglink, given
// with --symbols, or from a debuginfod server — and uses its symbols with the running code.
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>

#include "harness.h"

namespace lg::e2e {
namespace {

namespace fs = std::filesystem;

std::string sh(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[512];
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  int st = pclose(p);
  EXPECT_EQ(st, 0) << cmd << ": " << out;
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

// A stripped copy of calc and its debug file, in a directory of the test's own.
class Stripped : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/lg-stripped-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    exe_ = dir_ + "/calc";
    debug_ = dir_ + "/calc.debug";
    fs::copy_file(target_path("calc"), exe_);
    sh("objcopy --only-keep-debug " + exe_ + " " + debug_);
    sh("strip --strip-all " + exe_);
    build_id_ = sh("readelf -n " + exe_ + " | awk '/Build ID/ {print $3}'");
    ASSERT_GT(build_id_.size(), 2u);
    ASSERT_EQ(sh("readelf -S " + exe_ + " | grep -c '\\.symtab' || true"), "0");
    root_ = dir_ + "/debug-root";
    fs::create_directories(root_);
    ::setenv("LIVEGRAFT_DEBUG_ROOT", root_.c_str(), 1);
    ::unsetenv("DEBUGINFOD_URLS");
  }
  void TearDown() override {
    ::unsetenv("LIVEGRAFT_DEBUG_ROOT");
    ::unsetenv("DEBUGINFOD_URLS");
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  void install_by_build_id() {
    fs::path p = fs::path(root_) / ".build-id" / build_id_.substr(0, 2) / (build_id_.substr(2) + ".debug");
    fs::create_directories(p.parent_path());
    fs::copy_file(debug_, p);
  }
  void expect_patched(Target& t, const std::vector<std::string>& extra = {}) {
    ASSERT_EQ(t.ask("c 3"), "31");
    std::vector<std::string> args{"apply", std::to_string(t.pid()), patch_path("calc_fix")};
    args.insert(args.end(), extra.begin(), extra.end());
    CliRun r = livegraft(args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(t.ask("c 3"), "32");  // 3 * scale + 2: the patch reads the static scale
    EXPECT_EQ(t.ask("m 7"), "7");
    EXPECT_EQ(t.ask("c 3"), "23");
    EXPECT_EQ(t.ask("s"), "201");   // bump(1) before, bump(100) twice by the patch
    CliRun back = livegraft({"revert", std::to_string(t.pid()), "calc-fix"});
    ASSERT_EQ(back.exit_code, 0) << back.err;
    EXPECT_EQ(t.ask("c 3"), "22");
  }

  std::string dir_, exe_, debug_, build_id_, root_;
};

TEST_F(Stripped, WithoutDebugFileTheRefusalSaysWhereItLookedAndTouchesNothing) {
  Target t(exe_);
  std::string before = t.maps();
  CliRun r = livegraft({"apply", std::to_string(t.pid()), patch_path("calc_fix")});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("stripped"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(".build-id/" + build_id_.substr(0, 2)), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--symbols"), std::string::npos) << r.err;
  EXPECT_EQ(t.maps(), before);
  EXPECT_EQ(t.ask("c 3"), "31");
}

TEST_F(Stripped, DebugFileFoundByBuildIdUnderTheDebugRoot) {
  install_by_build_id();
  Target t(exe_);
  expect_patched(t);
}

TEST_F(Stripped, DebugFileFoundThroughGnuDebuglink) {
  sh("cd " + dir_ + " && objcopy --add-gnu-debuglink=calc.debug calc");
  Target t(exe_);
  expect_patched(t);
}

TEST_F(Stripped, DebugFileGivenWithSymbolsOption) {
  Target t(exe_);
  expect_patched(t, {"--symbols", debug_});
}

TEST_F(Stripped, SymbolsOptionWithAnotherBuildsDebugFileIsRefused) {
  std::string other = dir_ + "/other.debug";
  sh("objcopy --only-keep-debug " + target_path("calc_cet") + " " + other);
  Target t(exe_);
  std::string before = t.maps();
  CliRun r = livegraft({"apply", std::to_string(t.pid()), patch_path("calc_fix"), "--symbols", other});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("does not belong to"), std::string::npos) << r.err;
  EXPECT_EQ(t.maps(), before);
}

// A debuginfod server on loopback: python's static file server over buildid/<id>/debuginfo,
// the layout of the debuginfod protocol (debuginfod(8)).
TEST_F(Stripped, DebugFileFromDebuginfodWhenUrlsAreSet) {
  fs::path served = fs::path(dir_) / "srv" / "buildid" / build_id_ / "debuginfo";
  fs::create_directories(served.parent_path());
  fs::copy_file(debug_, served);
  Target server("/usr/bin/python3",
                {"-c",
                 "import http.server,os,sys\n"
                 "os.chdir(sys.argv[1])\n"
                 "s=http.server.ThreadingHTTPServer(('127.0.0.1',0),http.server.SimpleHTTPRequestHandler)\n"
                 "print('ready');print(s.server_address[1],flush=True)\n"
                 "sys.stderr=open(os.devnull,'w')\n"
                 "s.serve_forever()",
                 dir_ + "/srv"});
  std::string port = server.read_line();
  ASSERT_FALSE(port.empty());
  ::setenv("DEBUGINFOD_URLS", ("http://127.0.0.1:" + port).c_str(), 1);
  ::setenv("DEBUGINFOD_CACHE_PATH", (dir_ + "/cache").c_str(), 1);
  Target t(exe_);
  expect_patched(t);
  ::unsetenv("DEBUGINFOD_CACHE_PATH");
}

}  // namespace
}  // namespace lg::e2e
