// `livegraft build` against a stripped target: the symbols of the running binary come from its
// separate debug file, found the way `livegraft apply` finds it (src/elf/debug_file.h): the
// build-id path under $LIVEGRAFT_DEBUG_ROOT, `--symbols FILE`, a debuginfod server when
// DEBUGINFOD_URLS is set; or the debug file itself given as --target. projects/stripped: a
// static function (in no .dynsym) fixed by fix.diff.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "run_command.h"

extern char** environ;

namespace fs = std::filesystem;

namespace {

using lg::builder_test::run;

const fs::path kLivegraft = fs::path(LG_BINARY_DIR) / "livegraft";

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

class BuilderStripped : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(kLivegraft)) GTEST_SKIP() << "livegraft is not built";
    work_ = fs::path(LG_BINARY_DIR) / "builder-stripped" / ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(work_);
    fs::create_directories(work_);
    fs::copy(fs::path(LG_BUILDER_CASES) / "projects" / "stripped", work_ / "src", fs::copy_options::recursive);
    std::string out;
    ASSERT_EQ(run("make -C " + (work_ / "src").string(), &out), 0) << out;
    // What a distribution ships: the stripped binary, and its symbols and DWARF apart.
    prog_ = (work_ / "src" / "prog").string();
    debug_ = (work_ / "prog.debug").string();
    ASSERT_EQ(run("objcopy --only-keep-debug " + prog_ + " " + debug_ + " && strip --strip-all " + prog_, &out), 0) << out;
    ASSERT_EQ(run("readelf -S " + prog_ + " | grep -c '\\.symtab'", &out), 1) << "still has a .symtab: " << out;
    ASSERT_EQ(run("readelf -n " + prog_ + " | awk '/Build ID/ {print $3}'", &out), 0);
    build_id_ = trim(out);
    ASSERT_GT(build_id_.size(), 2u);
    root_ = work_ / "debug-root";
    fs::create_directories(root_);
    ::setenv("LIVEGRAFT_DEBUG_ROOT", root_.c_str(), 1);
    ::unsetenv("DEBUGINFOD_URLS");
  }
  void TearDown() override {
    ::unsetenv("LIVEGRAFT_DEBUG_ROOT");
    ::unsetenv("DEBUGINFOD_URLS");
    ::unsetenv("DEBUGINFOD_CACHE_PATH");
  }
  int build(std::string* out, const std::string& target, const std::string& extra = "") {
    const fs::path src = work_ / "src";
    return run(kLivegraft.string() + " build --source " + src.string() + " --diff " + (src / "fix.diff").string() +
                   " --target " + target + " -o " + (work_ / "fix.o").string() + " " + extra,
               out);
  }

  fs::path work_, root_;
  std::string prog_, debug_, build_id_;
};

TEST_F(BuilderStripped, WithoutADebugFileTheErrorSaysWhereItLookedAndWhatToDo) {
  std::string out;
  EXPECT_NE(build(&out, prog_), 0) << out;
  EXPECT_NE(out.find("checked_length is not in the symbol table"), std::string::npos) << out;
  EXPECT_NE(out.find("no debug file was found"), std::string::npos) << out;
  EXPECT_NE(out.find(".build-id/" + build_id_.substr(0, 2)), std::string::npos) << out;
  EXPECT_NE(out.find("--symbols"), std::string::npos) << out;
}

TEST_F(BuilderStripped, DebugFileByBuildIdUnderTheDebugRoot) {
  fs::path p = root_ / ".build-id" / build_id_.substr(0, 2) / (build_id_.substr(2) + ".debug");
  fs::create_directories(p.parent_path());
  fs::copy_file(debug_, p);
  std::string out;
  ASSERT_EQ(build(&out, prog_), 0) << out;
  EXPECT_NE(out.find("its symbols from " + p.string() + " (build-id)"), std::string::npos) << out;
  EXPECT_NE(out.find("CHANGED checked_length"), std::string::npos) << out;
  EXPECT_EQ(out.find("separate debug file"), std::string::npos) << out;  // the code was verified
}

TEST_F(BuilderStripped, DebugFileGivenWithSymbols) {
  std::string out;
  ASSERT_EQ(build(&out, prog_, "--symbols " + debug_), 0) << out;
  EXPECT_NE(out.find("(--symbols)"), std::string::npos) << out;
  EXPECT_NE(out.find("CHANGED checked_length"), std::string::npos) << out;
}

// The binary's .gnu_debuglink names a file next to the binary itself, also when the target is
// given through a symlink elsewhere, as `--target /proc/PID/exe` (what the README suggests) is:
// the link is followed first, as a debugger does.
TEST_F(BuilderStripped, DebugLinkIsLookedUpNextToTheBinaryASymlinkPointsTo) {
  std::string out;
  const fs::path next_to = work_ / "src" / "prog.debug";
  fs::copy_file(debug_, next_to);
  ASSERT_EQ(run("objcopy --add-gnu-debuglink=" + next_to.string() + " " + prog_, &out), 0) << out;
  const fs::path link = work_ / "bin" / "prog";
  fs::create_directories(link.parent_path());
  fs::create_symlink(prog_, link);
  ASSERT_EQ(build(&out, link.string()), 0) << out;
  EXPECT_NE(out.find("its symbols from " + next_to.string() + " (.gnu_debuglink)"), std::string::npos) << out;
  EXPECT_NE(out.find("CHANGED checked_length"), std::string::npos) << out;
}

// The code is still checked against the stripped binary: a debug file of another build is refused.
TEST_F(BuilderStripped, DebugFileOfAnotherBuildIsRefused) {
  std::string out;
  const std::string other = (work_ / "other.debug").string();
  ASSERT_EQ(run("cd " + work_.string() + " && gcc -O2 -g -o other src/prog.c -Wl,--build-id=0x1234 && objcopy --only-keep-debug other " + other,
                &out), 0) << out;
  EXPECT_NE(build(&out, prog_, "--symbols " + other), 0) << out;
  EXPECT_NE(out.find("does not belong to"), std::string::npos) << out;
}

// `--target prog.debug`, as a debugger user would try: symbols and build-id from it; no code to
// verify the rebuilt original against, which the build says.
TEST_F(BuilderStripped, DebugFileAsTheTargetBuildsAndWarnsThatTheCodeWasNotVerified) {
  std::string out;
  ASSERT_EQ(build(&out, debug_), 0) << out;
  EXPECT_NE(out.find("CHANGED checked_length"), std::string::npos) << out;
  EXPECT_NE(out.find("is a separate debug file: the rebuilt original was not compared"), std::string::npos) << out;
  // Bound to the build-id the running binary has.
  ASSERT_EQ(run("readelf -p .livegraft.meta " + (work_ / "fix.o").string(), &out), 0) << out;
  EXPECT_NE(out.find(build_id_), std::string::npos) << out;
}

// debuginfod (elfutils' client): python's static file server on loopback over
// buildid/<id>/debuginfo, the layout of the debuginfod protocol.
TEST_F(BuilderStripped, DebugFileFromDebuginfodWhenUrlsAreSet) {
  fs::path served = work_ / "srv" / "buildid" / build_id_ / "debuginfo";
  fs::create_directories(served.parent_path());
  fs::copy_file(debug_, served);
  int pipe_fd[2];
  ASSERT_EQ(::pipe(pipe_fd), 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, pipe_fd[1], 1);
  posix_spawn_file_actions_addclose(&fa, pipe_fd[0]);
  std::string dir = (work_ / "srv").string();
  const char* argv[] = {"/usr/bin/python3", "-c",
                        "import http.server,os,sys\n"
                        "os.chdir(sys.argv[1])\n"
                        "s=http.server.ThreadingHTTPServer(('127.0.0.1',0),http.server.SimpleHTTPRequestHandler)\n"
                        "print(s.server_address[1],flush=True)\n"
                        "sys.stderr=open(os.devnull,'w')\n"
                        "s.serve_forever()",
                        dir.c_str(), nullptr};
  pid_t server = 0;
  ASSERT_EQ(posix_spawn(&server, argv[0], &fa, nullptr, const_cast<char**>(argv), environ), 0);
  posix_spawn_file_actions_destroy(&fa);
  ::close(pipe_fd[1]);
  std::string port;
  char c;
  while (::read(pipe_fd[0], &c, 1) == 1 && c != '\n') port += c;  // the server is listening
  ::close(pipe_fd[0]);
  ASSERT_FALSE(port.empty());
  ::setenv("DEBUGINFOD_URLS", ("http://127.0.0.1:" + port).c_str(), 1);
  ::setenv("DEBUGINFOD_CACHE_PATH", (work_ / "cache").c_str(), 1);
  std::string out;
  int rc = build(&out, prog_);
  ::kill(server, SIGKILL);
  ::waitpid(server, nullptr, 0);
  if (out.find("debuginfod") == std::string::npos && rc != 0 && out.find("no debug file") != std::string::npos)
    GTEST_SKIP() << "livegraft was built without libdebuginfod: " << out;
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("(debuginfod)"), std::string::npos) << out;
  EXPECT_NE(out.find("CHANGED checked_length"), std::string::npos) << out;
}

}  // namespace
