// Process::remote_call on real targets, one test per hazard.
#include <gtest/gtest.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <thread>

#include "process/process.h"
#include "process/process_internal.h"
#include "process/test_support.h"
#include "seized_program.h"

namespace lg {
namespace {

using namespace std::chrono_literals;
using testing::TargetProcess;

constexpr uint64_t kERestartSys = static_cast<uint64_t>(-512);

using ProcessRemoteCall = SeizedProgramTest;

TEST_F(ProcessRemoteCall, GetpidAndStrlenOfAStringArgument) {
  ASSERT_NO_FATAL_FAILURE(seize_program("process_counter", {"2"}, "tick"));
  Process& p = *seized;
  RemoteAddr getpid_fn = libc("getpid");
  RemoteAddr strlen_fn = libc("strlen");
  ASSERT_FALSE(getpid_fn.is_null());

  for (pid_t tid : p.threads()) {
    ASSERT_TRUE(p.stop_thread(tid, 5s).ok());
    auto before = p.get_regs(tid);
    ASSERT_TRUE(before.ok());
    auto r = p.remote_call(tid, getpid_fn, {}, 5s);
    ASSERT_TRUE(r.ok()) << r.error().describe();
    EXPECT_EQ(*r, static_cast<uint64_t>(target.pid()));
    RemoteArg args[] = {RemoteArg::string("livegraft!")};
    auto len = p.remote_call(tid, strlen_fn, args, 5s);
    ASSERT_TRUE(len.ok()) << len.error().describe();
    EXPECT_EQ(*len, 10u);
    // Every register is back.
    auto after = p.get_regs(tid);
    ASSERT_TRUE(after.ok());
    EXPECT_EQ(0, std::memcmp(&*before, &*after, sizeof(Registers)));
    ASSERT_TRUE(p.resume_thread(tid).ok());
  }
  expect_ticking_after_detach();
}

TEST_F(ProcessRemoteCall, SyscallRestartBlockedReadStillGetsItsData) {
  ASSERT_NO_FATAL_FAILURE(seize_program("process_blocked_read", {}, "ready"));
  Process& p = *seized;
  const pid_t tid = target.pid();

  // Wait until the thread is in read(): stopped there, orig_rax is SYS_read and rax says the
  // kernel will restart it.
  Registers regs{};
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(p.stop_thread(tid, 5s).ok());
    regs = *p.get_regs(tid);
    if (regs.orig_rax == SYS_read) break;
    ASSERT_TRUE(p.resume_thread(tid).ok());
    std::this_thread::sleep_for(2ms);
  }
  ASSERT_EQ(regs.orig_rax, static_cast<uint64_t>(SYS_read));
  EXPECT_EQ(regs.rax, kERestartSys);

  auto r = p.remote_call(tid, libc("getpid"), {}, 5s);
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(*r, static_cast<uint64_t>(target.pid()));
  ASSERT_TRUE(p.resume_thread(tid).ok());
  seized.reset();

  ASSERT_TRUE(target.write_stdin("hello\n"));
  std::string line = target.wait_line([](const std::string& l) { return l.rfind("got", 0) == 0 || l.rfind("error", 0) == 0; });
  EXPECT_EQ(line, "got 6 hello");
}

TEST_F(ProcessRemoteCall, RedZoneOfTheInterruptedFunctionSurvives) {
  ASSERT_NO_FATAL_FAILURE(seize_program("process_redzone", {}, "range "));
  char* end = nullptr;
  uint64_t lo = std::strtoull(ready_line.c_str() + 6, &end, 16);
  uint64_t hi = std::strtoull(end, nullptr, 16);
  ASSERT_FALSE(target.wait_prefix("alive").empty());
  Process& p = *seized;
  const pid_t tid = target.pid();
  RemoteAddr getpid_fn = libc("getpid");
  RemoteAddr strlen_fn = libc("strlen");

  int calls_inside_loop = 0;
  for (int i = 0; i < 200 && calls_inside_loop < 10; ++i) {
    ASSERT_TRUE(p.stop_thread(tid, 5s).ok());
    auto regs = p.get_regs(tid);
    ASSERT_TRUE(regs.ok());
    if (regs->rip >= lo && regs->rip < hi) {
      ++calls_inside_loop;
      ASSERT_TRUE(p.remote_call(tid, getpid_fn, {}, 5s).ok());
      RemoteArg args[] = {RemoteArg::string(std::string(300, 'x'))};  // bytes on the stack too
      auto len = p.remote_call(tid, strlen_fn, args, 5s);
      ASSERT_TRUE(len.ok());
      EXPECT_EQ(*len, 300u);
    }
    ASSERT_TRUE(p.resume_thread(tid).ok());
    std::this_thread::sleep_for(1ms);
  }
  ASSERT_GT(calls_inside_loop, 0) << "never caught the thread inside its red-zone loop";
  seized.reset();
  target.drain();
  std::string next = target.wait_line([](const std::string& l) { return l == "clobbered" || l.rfind("alive", 0) == 0; });
  EXPECT_EQ(next.rfind("alive", 0), 0u) << next;
  for (const auto& l : target.lines()) EXPECT_NE(l, "clobbered");
}

TEST_F(ProcessRemoteCall, SignalRaisedDuringTheCallIsDeliveredAfterwards) {
  ASSERT_NO_FATAL_FAILURE(seize_counter_stopped());
  RemoteArg args[] = {RemoteArg::of(SIGUSR1)};
  auto r = p().remote_call(tid(), libc("raise"), args, 5s);
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(*r, 0u);
  ASSERT_TRUE(p().resume_thread(tid()).ok());
  seized.reset();
  EXPECT_FALSE(target.wait_prefix("usr1").empty());
  target.drain();
  EXPECT_FALSE(target.wait_prefix("tick").empty());
}

TEST_F(ProcessRemoteCall, CrashInTheCalledFunctionIsAnErrorAndTheTargetLives) {
  ASSERT_NO_FATAL_FAILURE(seize_counter_stopped());
  auto before = *p().get_regs(tid());
  RemoteArg args[] = {RemoteArg::of(8)};  // strlen((char*)8): a fault inside libc
  auto r = p().remote_call(tid(), libc("strlen"), args, 5s);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("SEGV"), std::string::npos) << r.error().message;
  // Never a plain "registers restored": the function was abandoned with whatever it held.
  EXPECT_NE(r.error().message.find("may still be held"), std::string::npos) << r.error().message;
  auto after = *p().get_regs(tid());
  EXPECT_EQ(0, std::memcmp(&before, &after, sizeof(Registers)));
  resume_and_expect_ticking();
}

TEST_F(ProcessRemoteCall, TimeoutInterruptsRestoresAndKeepsSyscallRestartSane) {
  ASSERT_NO_FATAL_FAILURE(seize_counter_stopped());
  auto before = *p().get_regs(tid());
  RemoteArg args[] = {RemoteArg::of(1000)};  // sleep(1000)
  auto r = p().remote_call(tid(), libc("sleep"), args, 100ms);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::timeout) << r.error().describe();
  EXPECT_TRUE(p().is_stopped(tid()));
  auto after = *p().get_regs(tid());
  // The interrupted sleep() overwrote the thread's restart_block: a usleep the main thread was
  // in is re-issued (-ERESTARTNOINTR) rather than restarted through it (it would sleep 1000 s).
  if (before.rax == static_cast<uint64_t>(-516) && static_cast<int64_t>(before.orig_rax) >= 0) {
    EXPECT_EQ(after.rax, static_cast<uint64_t>(-513));
    after.rax = before.rax;
  }
  EXPECT_EQ(0, std::memcmp(&before, &after, sizeof(Registers)));
  resume_and_expect_ticking();
}

TEST_F(ProcessRemoteCall, DlopenCrashingInsideTheLoaderIsReportedAsLocksMayBeHeld) {
  ASSERT_NO_FATAL_FAILURE(seize_counter_stopped());
  // dlopen((char*)8): _dl_open takes the loader lock, then reads the name and faults.
  RemoteArg args[] = {RemoteArg::of(8), RemoteArg::of(2 /* RTLD_NOW */)};
  auto r = p().remote_call(tid(), libc("dlopen"), args, 5s);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::unsafe) << r.error().describe();
  EXPECT_NE(r.error().message.find("may still be held"), std::string::npos) << r.error().message;
  EXPECT_EQ(r.error().message.find("registers restored"), std::string::npos) << r.error().message;
  ASSERT_TRUE(p().resume_thread(tid()).ok());
}

// Test-only fault hooks (process_internal.h): one step fails as if the kernel had refused it.
struct FaultPlan {
  std::string step;
  pid_t tid = 0;  // 0: any thread
  int skip = 0;   // let this many matching calls pass first
  int failed = 0;
};
FaultPlan g_plan;
bool planned_fault(const char* step, pid_t tid) {
  // One fault per plan: the error path that follows (a cleanup's own waits) runs unfaulted.
  if (g_plan.failed > 0 || g_plan.step != step || (g_plan.tid != 0 && g_plan.tid != tid)) return false;
  if (g_plan.skip > 0) {
    --g_plan.skip;
    return false;
  }
  ++g_plan.failed;
  return true;
}
struct FaultScope {
  explicit FaultScope(FaultPlan plan) {
    g_plan = std::move(plan);
    g_fault_hook_for_testing = planned_fault;
  }
  ~FaultScope() { g_fault_hook_for_testing = nullptr; }
};

TEST_F(ProcessRemoteCall, WaitFailingWhileTheCallRunsStillPutsTheThreadBack) {
  ASSERT_NO_FATAL_FAILURE(seize_counter_stopped());
  auto before = *p().get_regs(tid());
  // Three remote syscalls (mmap, mprotect x2) wait first; the fourth wait is the call's.
  {
    FaultScope fault({"run_until_marker", tid(), 3});
    RemoteArg args[] = {RemoteArg::of(1)};  // usleep(1): the call is running when the wait fails
    auto r = p().remote_call(tid(), libc("usleep"), args, 5s);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(g_plan.failed, 1);
    EXPECT_NE(r.error().message.find("injected fault"), std::string::npos) << r.error().message;
  }
  ASSERT_TRUE(p().is_stopped(tid()));
  auto after = p().get_regs(tid());
  ASSERT_TRUE(after.ok()) << after.error().describe();
  EXPECT_EQ(0, std::memcmp(&before, &*after, sizeof(Registers)));
  resume_and_expect_ticking();
}

TEST_F(ProcessRemoteCall, FailedRestoreIsReportedAndTheThreadRestoresItselfWhenResumed) {
  ASSERT_NO_FATAL_FAILURE(seize_counter_stopped());
  {
    // set_regs: 3 remote syscalls x (stub, restore), the call's registers, then the restore.
    FaultScope fault({"set_regs", tid(), 7});
    auto r = p().remote_call(tid(), libc("getpid"), {}, 5s);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(g_plan.failed, 1);
    EXPECT_NE(r.error().message.find("putting thread"), std::string::npos) << r.error().message;
  }
  ASSERT_TRUE(p().resume_thread(tid()).ok());
  seized.reset();
  target.drain();
  EXPECT_FALSE(target.wait_prefix("tick").empty()) << "the thread did not find its way back";
}

// The controller, in a child process, borrows the target's main thread for usleep(300 ms) and
// stalls inside its wait (a fault hook) until the test has sent the thread a signal and the
// controller has polled the thread many times since; then the test SIGKILLs the controller.
// The signal must still reach the program: it waited in the kernel (blocked during the call),
// not in the dead controller.
int g_to_test = -1, g_from_test = -1;
int g_polls_after_signal = -1;
bool stall_in_the_call(const char* step, pid_t) {
  static int calls = 0;
  if (std::string(step) != "run_until_marker") return false;
  if (++calls < 4) return false;  // the three remote syscalls of the arena
  if (g_polls_after_signal < 0) {
    char c = 'r';
    (void)!::write(g_to_test, &c, 1);    // the call is running
    (void)!::read(g_from_test, &c, 1);   // the signal was sent
    g_polls_after_signal = 0;
  } else if (++g_polls_after_signal == 200) {
    char c = 'p';
    (void)!::write(g_to_test, &c, 1);    // polled the thread 200 times since
    for (;;) ::pause();                  // wait for SIGKILL
  }
  return false;
}

TEST_F(ProcessRemoteCall, SignalSentDuringTheCallSurvivesTheControllersDeath) {
  ASSERT_NO_FATAL_FAILURE(start_program("process_counter", {"1"}, "tick"));
  const pid_t pid = target.pid();
  RemoteAddr usleep_fn = libc("usleep");
  int to_test[2], from_test[2];
  ASSERT_EQ(::pipe(to_test), 0);
  ASSERT_EQ(::pipe(from_test), 0);
  pid_t controller = ::fork();
  if (controller == 0) {
    g_to_test = to_test[1];
    g_from_test = from_test[0];
    g_fault_hook_for_testing = stall_in_the_call;
    auto seized = Process::seize(pid);
    if (!seized || !(*seized)->stop_thread(pid, 5s)) ::_exit(2);
    RemoteArg args[] = {RemoteArg::of(300000)};
    (void)(*seized)->remote_call(pid, usleep_fn, args, 10s);
    ::_exit(3);  // not reached: killed while the call runs
  }
  char c = 0;
  ASSERT_EQ(::read(to_test[0], &c, 1), 1);
  ASSERT_EQ(c, 'r');
  ASSERT_EQ(::syscall(SYS_tgkill, pid, pid, SIGUSR1), 0);
  c = 's';
  ASSERT_EQ(::write(from_test[1], &c, 1), 1);
  ASSERT_EQ(::read(to_test[0], &c, 1), 1);
  ASSERT_EQ(c, 'p');
  ASSERT_EQ(::kill(controller, SIGKILL), 0);
  int st = 0;
  ASSERT_EQ(::waitpid(controller, &st, 0), controller);
  EXPECT_TRUE(WIFSIGNALED(st)) << "the controller ended before it was killed";
  EXPECT_FALSE(target.wait_prefix("usr1", 5s).empty()) << "the signal was lost with the controller";
  target.drain();
  EXPECT_FALSE(target.wait_prefix("tick").empty());
  for (int fd : {to_test[0], to_test[1], from_test[0], from_test[1]}) ::close(fd);
}

using ProcessResume = ProcessRemoteCall;

TEST_F(ProcessResume, ResumeAllTriesEveryThreadAndReportsTheFailures) {
  ASSERT_NO_FATAL_FAILURE(seize_program("process_counter", {"3", "idle"}, "tick"));
  Process& p = *seized;
  ASSERT_TRUE(p.stop_all(5s).ok());
  const std::vector<pid_t> tids = p.threads();
  ASSERT_EQ(tids.size(), 4u);
  {
    FaultScope fault({"resume_one", tids[0], 0});
    auto r = p.resume_all();
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message.find(std::to_string(tids[0])), std::string::npos) << r.error().message;
  }
  EXPECT_TRUE(p.is_stopped(tids[0]));
  for (size_t i = 1; i < tids.size(); ++i) EXPECT_FALSE(p.is_stopped(tids[i])) << "thread " << tids[i] << " left frozen";
  ASSERT_TRUE(p.resume_thread(tids[0]).ok());
  expect_ticking_after_detach();
}

}  // namespace
}  // namespace lg
