// Process::seize, stop_all/resume_all and detaching, on real target processes.
#include <gtest/gtest.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#include <set>
#include <thread>

#include "process/process.h"
#include "process/test_support.h"
#include "seized_program.h"

namespace lg {
namespace {

using ProcessSeize = SeizedProgramTest;

using namespace std::chrono_literals;
using testing::TargetProcess;

long tick_of(const std::string& line) { return std::atol(line.c_str() + 5); }

// The target's main loop still runs: new ticks arrive after what was already written.
bool keeps_ticking(TargetProcess& target) {
  target.drain();
  std::string first = target.wait_prefix("tick ");
  if (first.empty()) return false;
  long t0 = tick_of(first);
  std::string later = target.wait_line([&](const std::string& l) { return l.rfind("tick ", 0) == 0 && tick_of(l) >= t0 + 2; });
  return !later.empty();
}

TEST_F(ProcessSeize, NonexistentPidIsNotFound) {
  pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ASSERT_GT(child, 0);
  int st;
  ASSERT_EQ(::waitpid(child, &st, 0), child);  // reaped: the pid is free now
  auto r = Process::seize(child);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::not_found) << r.error().describe();
}

TEST_F(ProcessSeize, ZombieIsNotFound) {
  pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ASSERT_GT(child, 0);
  siginfo_t info{};
  ASSERT_EQ(::waitid(P_PID, static_cast<id_t>(child), &info, WEXITED | WNOWAIT), 0);  // zombie, not reaped
  auto r = Process::seize(child);
  int st;
  ::waitpid(child, &st, 0);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::not_found);
  EXPECT_NE(r.error().message.find("zombie"), std::string::npos) << r.error().message;
}

TEST_F(ProcessSeize, AlreadyTracedIsBusyAndNamesTheTracer) {
  ASSERT_NO_FATAL_FAILURE(start_program("process_counter", {"2"}, "tick"));

  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  pid_t tracer = ::fork();
  if (tracer == 0) {
    char c = ::ptrace(PTRACE_SEIZE, target.pid(), nullptr, nullptr) == 0 ? 'y' : 'n';
    (void)!::write(ready[1], &c, 1);
    for (;;) ::pause();
  }
  ::close(ready[1]);
  char c = 0;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  ::close(ready[0]);
  ASSERT_EQ(c, 'y');

  auto r = Process::seize(target.pid());
  ::kill(tracer, SIGKILL);
  int st;
  ::waitpid(tracer, &st, 0);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::busy);
  EXPECT_NE(r.error().message.find(std::to_string(tracer)), std::string::npos) << r.error().message;
  // The other tracer is gone: now it works, and the target is unharmed.
  auto again = Process::seize(target.pid());
  ASSERT_TRUE(again.ok()) << again.error().describe();
  again->reset();
  EXPECT_TRUE(keeps_ticking(target));
}

TEST_F(ProcessSeize, UnprivilegedUserGetsPermissionError) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to switch to the unprivileged user";
  ASSERT_NO_FATAL_FAILURE(start_program("process_counter", {"1"}, "tick"));

  int out[2];
  ASSERT_EQ(::pipe(out), 0);
  pid_t child = ::fork();
  if (child == 0) {
    ::close(out[0]);
    if (::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0) ::_exit(2);
    auto r = Process::seize(target.pid());
    std::string report = r.ok() ? std::string("ok") : fmt::format("{}|{}", to_string(r.error().kind), r.error().describe());
    (void)!::write(out[1], report.data(), report.size());
    ::_exit(0);
  }
  ::close(out[1]);
  std::string report;
  char buf[1024];
  ssize_t n;
  while ((n = ::read(out[0], buf, sizeof buf)) > 0) report.append(buf, static_cast<size_t>(n));
  ::close(out[0]);
  int st;
  ASSERT_EQ(::waitpid(child, &st, 0), child);
  ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "child could not drop privileges";
  EXPECT_EQ(report.rfind("permission|", 0), 0u) << report;
  EXPECT_NE(report.find("uid 0"), std::string::npos) << report;
  EXPECT_NE(report.find("euid 65534"), std::string::npos) << report;
  EXPECT_TRUE(keeps_ticking(target));
}

TEST_F(ProcessSeize, MultiThreadedTargetStopsAndKeepsRunningAfterDetach) {
  ASSERT_NO_FATAL_FAILURE(start_program("process_counter", {"8"}, "addr value "));
  const std::string& addr_line = ready_line;
  uint64_t counters = std::strtoull(addr_line.substr(addr_line.find("counters ") + 9).c_str(), nullptr, 16);
  ASSERT_FALSE(target.wait_prefix("tick").empty());

  ASSERT_NO_FATAL_FAILURE(seize_started());
  Process& p = *seized;
  EXPECT_EQ(p.threads().size(), 9u);
  EXPECT_EQ(p.threads(), testing::list_tasks(target.pid()));

  for (int round = 0; round < 5; ++round) {
    ASSERT_TRUE(p.stop_all(5s).ok());
    for (pid_t tid : p.threads()) {
      EXPECT_TRUE(p.is_stopped(tid));
      EXPECT_EQ(testing::task_state(target.pid(), tid), 't') << "thread " << tid;
      auto regs = p.get_regs(tid);
      ASSERT_TRUE(regs.ok()) << regs.error().describe();
      EXPECT_NE(regs->rip, 0u);
    }
    // Stopped means stopped: the workers' counters do not move.
    auto before = p.read_value<long>(RemoteAddr(counters));
    ASSERT_TRUE(before.ok());
    std::this_thread::sleep_for(20ms);
    auto after = p.read_value<long>(RemoteAddr(counters));
    ASSERT_TRUE(after.ok());
    EXPECT_EQ(*before, *after);
    ASSERT_TRUE(p.stop_all(5s).ok());  // idempotent
    ASSERT_TRUE(p.resume_all().ok());
    for (pid_t tid : p.threads()) EXPECT_FALSE(p.is_stopped(tid));
  }
  // Single-thread stop leaves the others running.
  pid_t worker = p.threads().back();
  ASSERT_TRUE(p.stop_thread(worker, 5s).ok());
  EXPECT_TRUE(p.is_stopped(worker));
  EXPECT_FALSE(p.is_stopped(target.pid()));
  ASSERT_TRUE(p.resume_thread(worker).ok());

  seized.reset();
  EXPECT_NE(testing::task_state(target.pid(), target.pid()), 't');
  EXPECT_TRUE(keeps_ticking(target));
}

TEST_F(ProcessSeize, StopAllCatchesThreadsCreatedConcurrently) {
  ASSERT_NO_FATAL_FAILURE(seize_program("process_churn", {}, "round"));
  Process& p = *seized;
  size_t max_threads = 0;
  for (int round = 0; round < 40; ++round) {
    auto stopped = p.stop_all(5s);
    ASSERT_TRUE(stopped.ok()) << stopped.error().describe();
    std::set<pid_t> held;
    for (pid_t tid : p.threads()) held.insert(tid);
    max_threads = std::max(max_threads, held.size());
    for (pid_t tid : testing::list_tasks(target.pid())) {
      char st = testing::task_state(target.pid(), tid);
      if (st == 0 || st == 'Z' || st == 'X') continue;  // exiting, not ours to stop
      EXPECT_TRUE(held.count(tid)) << "thread " << tid << " (state " << st << ") escaped stop_all";
      EXPECT_EQ(st, 't') << "thread " << tid;
    }
    for (pid_t tid : held) EXPECT_TRUE(p.is_stopped(tid));
    ASSERT_TRUE(p.resume_all().ok());
    std::this_thread::sleep_for(2ms);
    ASSERT_TRUE(p.poll_events().ok());
  }
  EXPECT_GE(max_threads, 1u);
  seized.reset();
  std::string r0 = target.wait_prefix("round");
  ASSERT_FALSE(r0.empty());
  long n0 = std::atol(r0.c_str() + 6);
  EXPECT_FALSE(target.wait_line([&](const std::string& l) { return l.rfind("round", 0) == 0 && std::atol(l.c_str() + 6) > n0; })
                   .empty());
}

TEST_F(ProcessSeize, StopAllThousandThreads) {
  ASSERT_NO_FATAL_FAILURE(seize_program("process_counter", {"1000", "idle"}, "tick"));
  Process& p = *seized;
  EXPECT_EQ(p.threads().size(), 1001u);
  for (int round = 0; round < 3; ++round) {
    auto start = std::chrono::steady_clock::now();
    ASSERT_TRUE(p.stop_all(30s).ok());
    auto took = std::chrono::steady_clock::now() - start;
    for (pid_t tid : p.threads()) ASSERT_TRUE(p.is_stopped(tid));
    RecordProperty("stop_all_us_round" + std::to_string(round),
                   static_cast<int>(std::chrono::duration_cast<std::chrono::microseconds>(took).count()));
    ASSERT_TRUE(p.resume_all().ok());
  }
  seized.reset();
  EXPECT_TRUE(keeps_ticking(target));
}

TEST_F(ProcessSeize, SignalArrivingWhileHeldIsDeliveredLater) {
  ASSERT_NO_FATAL_FAILURE(seize_program("process_counter", {"2"}, "tick"));
  Process& p = *seized;

  // The signal stops the (running, traced) main thread in a signal-delivery-stop that nobody
  // collects yet; stop_all must keep the signal and deliver it when the thread goes again.
  ASSERT_EQ(::syscall(SYS_tgkill, target.pid(), target.pid(), SIGUSR1), 0);
  for (int i = 0; i < 2000 && testing::task_state(target.pid(), target.pid()) != 't'; ++i)
    std::this_thread::sleep_for(1ms);
  ASSERT_TRUE(p.stop_all(5s).ok());
  ASSERT_TRUE(p.resume_all().ok());
  // And one that arrives while everything is stopped.
  ASSERT_TRUE(p.stop_all(5s).ok());
  ASSERT_EQ(::kill(target.pid(), SIGUSR1), 0);
  ASSERT_TRUE(p.resume_all().ok());
  seized.reset();
  EXPECT_FALSE(target.wait_prefix("usr1").empty());
  EXPECT_TRUE(keeps_ticking(target));
}

TEST_F(ProcessSeize, ProcessExitWhileHeldIsThreadDied) {
  ASSERT_NO_FATAL_FAILURE(seize_program("process_counter", {"4"}, "tick"));
  Process& p = *seized;
  ASSERT_TRUE(p.stop_all(5s).ok());
  ASSERT_TRUE(p.resume_all().ok());
  ASSERT_EQ(::kill(target.pid(), SIGKILL), 0);
  auto r = p.stop_all(5s);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::thread_died) << r.error().describe();
  EXPECT_TRUE(p.threads().empty());
  auto call = p.remote_call(target.pid(), RemoteAddr(0x1000), {}, 1s);
  ASSERT_FALSE(call.ok());
  EXPECT_EQ(call.error().kind, ErrorKind::thread_died);
  seized.reset();  // nothing left to detach; must not hang
}

TEST_F(ProcessSeize, ZombieLeaderWithLiveThreads) {
  ASSERT_NO_FATAL_FAILURE(start_program("process_counter", {"3", "leader-exits"}, "tick"));
  for (int i = 0; i < 2000 && testing::task_state(target.pid(), target.pid()) != 'Z'; ++i)
    std::this_thread::sleep_for(1ms);
  ASSERT_EQ(testing::task_state(target.pid(), target.pid()), 'Z');
  ASSERT_NO_FATAL_FAILURE(seize_started());
  Process& p = *seized;
  for (int round = 0; round < 3; ++round) {
    auto r = p.stop_all(5s);
    ASSERT_TRUE(r.ok()) << r.error().describe();
    EXPECT_EQ(p.threads().size(), 3u);  // the workers; the zombie leader is not a thread to stop
    for (pid_t tid : p.threads()) EXPECT_TRUE(p.is_stopped(tid));
    ASSERT_TRUE(p.resume_all().ok());
  }
  seized.reset();
  EXPECT_TRUE(keeps_ticking(target));
}

TEST_F(ProcessSeize, GroupStoppedTargetStaysStopped) {
  ASSERT_NO_FATAL_FAILURE(seize_program("process_counter", {"2"}, "tick"));
  Process& p = *seized;
  ASSERT_EQ(::kill(target.pid(), SIGSTOP), 0);
  // Service the signal-delivery-stop and the group-stop reports.
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(p.poll_events().ok());
    std::this_thread::sleep_for(1ms);
  }
  ASSERT_TRUE(p.stop_all(5s).ok());
  for (pid_t tid : p.threads()) EXPECT_TRUE(p.is_stopped(tid));
  ASSERT_TRUE(p.resume_all().ok());
  seized.reset();
  // Still job-control stopped after we left ('T'); SIGCONT brings it back.
  for (int i = 0; i < 2000 && testing::task_state(target.pid(), target.pid()) != 'T'; ++i)
    std::this_thread::sleep_for(1ms);
  EXPECT_EQ(testing::task_state(target.pid(), target.pid()), 'T');
  ASSERT_EQ(::kill(target.pid(), SIGCONT), 0);
  EXPECT_TRUE(keeps_ticking(target));
}

}  // namespace
}  // namespace lg
