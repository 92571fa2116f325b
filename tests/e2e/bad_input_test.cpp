// Every bad input gets a clear error and leaves the target exactly as it was (same
// /proc/PID/maps, same behaviour).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "harness.h"

namespace lg::e2e {
namespace {

struct Case {
  std::string patch;
  int exit_code;
  std::string message;
};

void expect_refused_and_untouched(Target& t, const std::string& patch, int exit_code, const std::string& message) {
  std::string before = t.maps();
  CliRun r = livegraft({"apply", std::to_string(t.pid()), patch});
  EXPECT_EQ(r.exit_code, exit_code) << r.err;
  EXPECT_NE(r.err.find(message), std::string::npos) << "stderr: " << r.err;
  EXPECT_EQ(t.maps(), before) << "the target's mappings changed";
  EXPECT_EQ(t.ask("c 5"), "51");
}

TEST(BadInput, WrongBuildId) {
  Target t(target_path("calc"));
  expect_refused_and_untouched(t, patch_path("bad_build_id"), 6, "build-id mismatch");
}

TEST(BadInput, MissingImportedSymbol) {
  Target t(target_path("calc"));
  expect_refused_and_untouched(t, patch_path("bad_missing_symbol"), 3, "livegraft_no_such_function");
}

TEST(BadInput, MissingTargetFunction) {
  Target t(target_path("calc"));
  expect_refused_and_untouched(t, patch_path("bad_missing_function"), 3, "livegraft_not_in_target");
}

TEST(BadInput, UnsupportedRelocation) {
  Target t(target_path("calc"));
  expect_refused_and_untouched(t, patch_path("bad_relocation"), 6, "R_X86_64_");
}

TEST(BadInput, CorruptAndTruncatedPatchFiles) {
  Target t(target_path("calc"));
  std::ifstream in(patch_path("calc_fix"), std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  ASSERT_GT(bytes.size(), 1000u);
  auto dir = std::filesystem::temp_directory_path() / ("lg-corrupt-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::string before = t.maps();
  for (size_t len : {size_t{0}, size_t{10}, size_t{64}, bytes.size() / 3, bytes.size() - 1}) {
    auto p = dir / ("trunc" + std::to_string(len) + ".o");
    std::ofstream(p, std::ios::binary).write(bytes.data(), static_cast<long>(len));
    CliRun r = livegraft({"apply", std::to_string(t.pid()), p.string()});
    EXPECT_EQ(r.exit_code, 6) << "length " << len << ": " << r.err;
    EXPECT_NE(r.err.find("livegraft: error:"), std::string::npos) << r.err;
  }
  std::string garbage = bytes;
  for (size_t i = 64; i < garbage.size(); i += 7) garbage[i] = static_cast<char>(garbage[i] ^ 0x5a);
  auto p = dir / "garbage.o";
  std::ofstream(p, std::ios::binary).write(garbage.data(), static_cast<long>(garbage.size()));
  CliRun r = livegraft({"apply", std::to_string(t.pid()), p.string()});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_LT(r.exit_code, 128) << "livegraft crashed: " << r.err;
  EXPECT_EQ(t.maps(), before);
  EXPECT_EQ(t.ask("c 5"), "51");
  std::filesystem::remove_all(dir);
}

TEST(BadInput, PidThatDoesNotExist) {
  pid_t pid = fork();
  if (pid == 0) _exit(0);
  waitpid(pid, nullptr, 0);  // a pid that existed a moment ago and is gone now
  CliRun r = livegraft({"apply", std::to_string(pid), patch_path("calc_fix")});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("no process"), std::string::npos) << r.err;
  CliRun s = livegraft({"--json", "status", std::to_string(pid)});
  EXPECT_EQ(s.exit_code, 3);
  EXPECT_EQ(s.json["kind"], "not_found");
}

TEST(BadInput, ProcessOwnedByAnotherUser) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to run the controller as another user";
  Target t(target_path("calc"));
  std::string before = t.maps();
  CliRun r = livegraft({"apply", std::to_string(t.pid()), patch_path("calc_fix")}, 65534);
  EXPECT_EQ(r.exit_code, 4) << r.err << r.out;
  EXPECT_NE(r.err.find("may not"), std::string::npos) << r.err;
  EXPECT_EQ(t.maps(), before);
  EXPECT_EQ(t.ask("c 5"), "51");
}

TEST(BadInput, ProcessAlreadyTraced) {
  Target t(target_path("calc"));
  // Another tracer: a child of ours that seizes the target and waits.
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  pid_t tracer = fork();
  if (tracer == 0) {
    char ok = ptrace(PTRACE_SEIZE, t.pid(), nullptr, nullptr) == 0 ? 'y' : 'n';
    (void)!write(ready[1], &ok, 1);
    pause();
    _exit(0);
  }
  char ok = 0;
  ASSERT_EQ(read(ready[0], &ok, 1), 1);
  ASSERT_EQ(ok, 'y');
  std::string before = t.maps();
  CliRun r = livegraft({"apply", std::to_string(t.pid()), patch_path("calc_fix")});
  EXPECT_EQ(r.exit_code, 5) << r.err;
  EXPECT_NE(r.err.find("already traced"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(std::to_string(tracer)), std::string::npos) << r.err;
  kill(tracer, SIGKILL);
  waitpid(tracer, nullptr, 0);
  EXPECT_EQ(t.maps(), before);
  EXPECT_EQ(t.ask("c 5"), "51");
}

}  // namespace
}  // namespace lg::e2e
