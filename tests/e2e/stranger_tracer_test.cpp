// What `status` says when a thread of the process is held in a ptrace stop by someone else.
// Seen as a newcomer running `livegraft status` while an `apply` switched haproxy's threads one
// at a time: "held in a stop by its tracer (pid 0)" (the leader's TracerPid, 0 while only
// another thread was held) with the hint "detach the debugger first".
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <dirent.h>
#include <gtest/gtest.h>

#include <string>

#include "harness.h"

namespace lg::e2e {
namespace {

pid_t some_other_thread(pid_t pid) {
  pid_t found = 0;
  if (DIR* d = opendir(("/proc/" + std::to_string(pid) + "/task").c_str())) {
    while (dirent* e = readdir(d)) {
      pid_t tid = static_cast<pid_t>(std::atoi(e->d_name));
      if (tid > 0 && tid != pid) found = tid;
    }
    closedir(d);
  }
  return found;
}

TEST(StrangerTracer, ThreadHeldByAnotherTracerIsNamedWithThatTracersPid) {
  Target t(target_path("stranger_sigblock"));  // the main thread and three workers
  const pid_t tid = some_other_thread(t.pid());
  ASSERT_GT(tid, 0);
  ASSERT_EQ(ptrace(PTRACE_SEIZE, tid, 0, 0), 0);
  ASSERT_EQ(ptrace(PTRACE_INTERRUPT, tid, 0, 0), 0);
  int status = 0;
  ASSERT_EQ(waitpid(tid, &status, __WALL), tid);
  CliRun s = livegraft({"status", std::to_string(t.pid())});
  const std::string me = std::to_string(static_cast<pid_t>(syscall(SYS_gettid)));
  EXPECT_EQ(s.exit_code, 5) << s.err;
  EXPECT_NE(s.err.find("held in a stop by its tracer (pid " + me + ")"), std::string::npos) << s.err;
  ptrace(PTRACE_DETACH, tid, 0, 0);
}

}  // namespace
}  // namespace lg::e2e
