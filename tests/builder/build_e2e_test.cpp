// End to end: `livegraft build` a fix for a running program from its source tree and a diff,
// `livegraft apply` it, and see the fixed behaviour with the program's state intact.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "run_command.h"

namespace fs = std::filesystem;

namespace {

using lg::builder_test::run;

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A child running `program` with the agent preloaded and stdout to `out`; killed on scope exit.
struct Running {
  pid_t pid = -1;
  Running(const fs::path& program, const fs::path& out, const std::string& agent) {
    pid = fork();
    if (pid == 0) {
      setenv("LD_PRELOAD", agent.c_str(), 1);
      FILE* f = freopen(out.c_str(), "w", stdout);
      (void)f;
      execl(program.c_str(), program.c_str(), nullptr);
      _exit(127);
    }
  }
  ~Running() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  }
};

}  // namespace

TEST(BuilderEndToEnd, BuildAndApplyFixToRunningProgramKeepsStaticState) {
  const fs::path livegraft = fs::path(LG_BINARY_DIR) / "livegraft";
  const std::string agent = LG_AGENT_PATH;
  if (!fs::exists(livegraft) || !fs::exists(agent)) GTEST_SKIP() << "livegraft or the agent is not built";
  const fs::path work = fs::path(LG_BINARY_DIR) / "builder-e2e" / "counter";
  fs::remove_all(work);
  fs::create_directories(work.parent_path());
  fs::copy(fs::path(LG_BUILDER_CASES) / "projects" / "counter", work, fs::copy_options::recursive);
  std::string out;
  ASSERT_EQ(run("make -C " + work.string(), &out), 0) << out;

  Running prog(work / "counter", work / "out.txt", agent);
  ASSERT_GT(prog.pid, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const std::string exe = "/proc/" + std::to_string(prog.pid) + "/exe";
  const fs::path fix = work / "fix.o";
  ASSERT_EQ(run(livegraft.string() + " build --source " + work.string() + " --diff " + (work / "fix.diff").string() +
                    " --target " + exe + " -o " + fix.string(), &out), 0) << out;
  EXPECT_NE(out.find("CHANGED stats_average"), std::string::npos) << out;
  EXPECT_EQ(slurp(work / "out.txt").find("[fixed]"), std::string::npos);

  ASSERT_EQ(run(livegraft.string() + " apply " + std::to_string(prog.pid) + " " + fix.string(), &out), 0) << out;
  // The fixed stats_average prints "[fixed] " and adds 1000000 to the average it computes from
  // the ORIGINAL's static total/samples, which keep counting: the average stays small.
  std::string text;
  for (int i = 0; i < 200 && text.find("[fixed] average=10000") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
    text = slurp(work / "out.txt");
  }
  ASSERT_NE(text.find("[fixed] average=10000"), std::string::npos) << text.substr(text.size() > 400 ? text.size() - 400 : 0);
}
