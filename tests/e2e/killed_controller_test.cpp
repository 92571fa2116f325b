// A controller killed in the middle of a transition (SIGKILL while it waits for a blocked
// thread) leaves the target running and consistent: the agent notices the closed connection,
// sees that no code was written, unloads the patch, and the next apply works.
#include <gtest/gtest.h>
#include <signal.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <thread>

#include "harness.h"

namespace lg::e2e {
namespace {

TEST(KilledController, AgentUndoesTheAbandonedApplyAndTheNextApplyWorks) {
  Target t(target_path("sleeper"), {"3000"});
  const std::string pid = std::to_string(t.pid());
  ASSERT_EQ(livegraft({"inject", pid}).exit_code, 0);
  ASSERT_EQ(t.ask("b"), "started");  // a thread now sleeps inside compute()
  std::string maps_before = t.maps();

  pid_t controller = fork();
  if (controller == 0) {
    int devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 1);
    dup2(devnull, 2);
    std::string exe = livegraft_path(), patch = patch_path("sleeper_fix");
    execl(exe.c_str(), exe.c_str(), "apply", "--timeout", "60", pid.c_str(), patch.c_str(), nullptr);
    _exit(127);
  }
  // Let it load the patch and start waiting for the sleeping thread, then kill it.
  std::this_thread::sleep_for(std::chrono::milliseconds(800));
  ASSERT_EQ(kill(controller, SIGKILL), 0);
  int st = 0;
  waitpid(controller, &st, 0);
  ASSERT_TRUE(WIFSIGNALED(st)) << "the controller finished before it was killed";

  CliRun s = livegraft({"--json", "status", pid});
  ASSERT_EQ(s.exit_code, 0) << s.err;
  EXPECT_EQ(s.json["patches"].size(), 0u) << s.out;
  EXPECT_TRUE(s.json["disabled"].is_null()) << s.out;
  EXPECT_TRUE(s.json["transition"].is_null()) << s.out;
  EXPECT_EQ(t.maps(), maps_before);
  EXPECT_EQ(t.ask("c"), "1");
  EXPECT_EQ(t.read_line(std::chrono::seconds(10)), "done 1");

  CliRun a = livegraft({"apply", pid, patch_path("sleeper_fix")});
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(t.ask("c"), "2");
}

}  // namespace
}  // namespace lg::e2e
