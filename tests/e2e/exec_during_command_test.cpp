// A target that replaces its program (execve) or dies in the middle of a livegraft command
// (docs/consistency.md, "execve and exits during a command"): the controller notices at once,
// stops, and says which it was — "process N replaced its program (execve) during ...: the patch
// is no longer in it", "process N was killed by signal 9 (SIGKILL) ..." — with exit code 1
// (kind thread_died), never a timeout or an unreadable address. The new program runs unharmed
// and `status` finds no agent in it. tests/programs/pt_exec.c execs itself on a command ("e"
// from the leader, "E" from another thread) or on SIGUSR1 (while livegraft borrows the main
// thread); the controller is held at a named step with LIVEGRAFT_PAUSE_AT (common/kill_point.h)
// where the test must act while it waits.
#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/syscall.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <thread>

#include "harness.h"

namespace lg::e2e {
namespace {

using namespace std::chrono_literals;

// The state letters of the threads of [pid] ('t': in a ptrace stop).
std::vector<char> thread_states(pid_t pid) {
  std::vector<char> out;
  std::string dir = "/proc/" + std::to_string(pid) + "/task";
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] == '.') continue;
      std::ifstream in(dir + "/" + e->d_name + "/stat");
      std::string s;
      std::getline(in, s);
      auto close = s.rfind(')');
      if (close != std::string::npos && close + 2 < s.size()) out.push_back(s[close + 2]);
    }
    closedir(d);
  }
  return out;
}

// Polls until [done] (a state the kernel reaches by itself, not a guess at a delay).
bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout = 10s) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

// The controller says it pauses, then stops itself (SIGSTOP): a SIGCONT sent between the two is
// lost and it stays stopped. Wait for the stop first (seen once under load: a 120 s hang).
void resume_paused_controller(pid_t controller) {
  ASSERT_TRUE(wait_until([&] {
    auto st = thread_states(controller);
    return !st.empty() && std::all_of(st.begin(), st.end(), [](char c) { return c == 'T'; });
  })) << "the controller did not stop at its kill point";
  ASSERT_EQ(::kill(controller, SIGCONT), 0);
}

// The new image: the same pid, generation 1, the old code, no agent.
void expect_new_program_unharmed(Target& t) {
  EXPECT_EQ(t.read_line(), "ready") << "the new program did not start";
  EXPECT_EQ(t.ask("g"), "1");
  EXPECT_EQ(t.ask("c"), "110") << "the new program must run its own (old) code";
  CliRun s = livegraft({"--json", "status", std::to_string(t.pid())});
  EXPECT_EQ(s.exit_code, 0) << s.out << s.err;
  ASSERT_TRUE(s.json.is_object()) << s.out << s.err;
  EXPECT_EQ(s.json.value("agent", true), false) << s.out;
  CliRun human = livegraft({"status", std::to_string(t.pid())});
  EXPECT_NE(human.out.find("no livegraft agent, no patches"), std::string::npos) << human.out << human.err;
  EXPECT_TRUE(t.alive());
}

struct ExecCase {
  const char* model;    // --model
  const char* trigger;  // "e": the leader execs, "E": another thread does
};

class ExecDuringTransition : public ::testing::TestWithParam<ExecCase> {};

// A thread held inside the old outer() keeps the transition waiting; the target then runs
// execve. Before: the per-thread controller ended with "reading 8 bytes at 0x... address not
// mapped (or the process exited)".
TEST_P(ExecDuringTransition, ControllerSaysTheProgramWasReplaced) {
  const ExecCase c = GetParam();
  Target t(target_path("pt_exec"));
  const std::string pid = std::to_string(t.pid());
  ASSERT_EQ(t.ask("b"), "started");
  ASSERT_TRUE(wait_for_thread_in_syscall(t.pid(), {SYS_read}));
  CliProcess apply({"-v", "--json", "apply", "--model", c.model, "--timeout", "60", pid, patch_path("pt_pair_fix")});
  ASSERT_TRUE(apply.wait_for_stderr("waiting:"));  // the held thread keeps it open
  t.send(c.trigger);
  CliRun r = apply.finish();
  ASSERT_TRUE(r.json.is_object()) << r.out << r.err;
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_EQ(r.json.value("kind", ""), "thread_died") << r.out;
  const std::string error = r.json.value("error", "");
  EXPECT_NE(error.find("process " + pid + " replaced its program (execve) during the " + std::string(c.model) +
                       " apply of patch 'pt-pair-fix': the patch is no longer in it"),
            std::string::npos)
      << error;
  EXPECT_EQ(error.find("not mapped"), std::string::npos) << error;
  expect_new_program_unharmed(t);
}

INSTANTIATE_TEST_SUITE_P(Models, ExecDuringTransition,
                         ::testing::Values(ExecCase{"per-thread", "e"}, ExecCase{"per-thread", "E"},
                                           ExecCase{"stop-the-world", "e"}, ExecCase{"stop-the-world", "E"}),
                         [](const auto& info) {
                           return std::string(info.param.model[0] == 'p' ? "PerThread" : "StopTheWorld") +
                                  (info.param.trigger[0] == 'e' ? "LeaderExecs" : "OtherThreadExecs");
                         });

// The same for a per-thread revert: a thread held inside the new outer() keeps it waiting.
TEST(ExecDuringRevert, PerThreadControllerSaysTheProgramWasReplaced) {
  Target t(target_path("pt_exec"));
  const std::string pid = std::to_string(t.pid());
  CliRun applied = livegraft({"apply", "--model", "per-thread", pid, patch_path("pt_pair_fix")});
  ASSERT_EQ(applied.exit_code, 0) << applied.err;
  ASSERT_EQ(t.ask("c"), "220");
  ASSERT_EQ(t.ask("b"), "started");
  ASSERT_TRUE(wait_for_thread_in_syscall(t.pid(), {SYS_read}));
  CliProcess revert({"-v", "--json", "revert", "--model", "per-thread", "--timeout", "60", pid, "pt-pair-fix"});
  ASSERT_TRUE(revert.wait_for_stderr("waiting:"));
  t.send("E");
  CliRun r = revert.finish();
  ASSERT_TRUE(r.json.is_object()) << r.out << r.err;
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_EQ(r.json.value("kind", ""), "thread_died") << r.out;
  EXPECT_NE(r.json.value("error", "").find("process " + pid +
                                           " replaced its program (execve) during the per-thread revert of patch 'pt-pair-fix'"),
            std::string::npos)
      << r.out;
  expect_new_program_unharmed(t);
}

// The target is killed while the transition waits for its held thread: said at once.
TEST(TargetDeath, KilledDuringAPerThreadTransitionIsSaidAtOnce) {
  Target t(target_path("pt_exec"));
  const std::string pid = std::to_string(t.pid());
  ASSERT_EQ(t.ask("b"), "started");
  ASSERT_TRUE(wait_for_thread_in_syscall(t.pid(), {SYS_read}));
  CliProcess apply({"-v", "--json", "apply", "--model", "per-thread", "--timeout", "60", pid, patch_path("pt_pair_fix")});
  ASSERT_TRUE(apply.wait_for_stderr("waiting:"));
  ASSERT_EQ(::kill(t.pid(), SIGKILL), 0);
  CliRun r = apply.finish();
  ASSERT_TRUE(r.json.is_object()) << r.out << r.err;
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_EQ(r.json.value("kind", ""), "thread_died") << r.out;
  EXPECT_NE(r.json.value("error", "").find("process " + pid + " was killed by signal 9 (SIGKILL) during the per-thread apply"),
            std::string::npos)
      << r.out;
}

// The agent is being injected (the main thread borrowed, the controller held at a step of it)
// when another thread runs execve: nothing is left half-done (the image being changed is
// gone), and the controller says so instead of trying other threads until --timeout — or,
// after dlopen returned, instead of resuming the new program out of its exec stop unseen.
class ExecDuringInjection : public ::testing::TestWithParam<const char*> {};

TEST_P(ExecDuringInjection, ControllerSaysTheProgramWasReplaced) {
  const std::string step = GetParam();
  Target t(target_path("pt_exec"));
  const std::string pid = std::to_string(t.pid());
  CliProcess apply({"-v", "--json", "apply", "--model", "per-thread", "--timeout", "60", pid, patch_path("pt_pair_fix")},
                   {"LIVEGRAFT_PAUSE_AT=" + step});
  ASSERT_TRUE(apply.wait_for_stderr("paused at kill point " + step));
  ASSERT_EQ(::kill(t.pid(), SIGUSR1), 0);  // the sigwait thread execs
  // The execve has begun: every other thread is killed (a zombie until its paused tracer reaps
  // it), and the execing one waits for that in de_thread ('D') or sits in its exec stop ('t').
  ASSERT_TRUE(wait_until([&] {
    auto st = thread_states(t.pid());
    auto live = std::count_if(st.begin(), st.end(), [](char c) { return c != 'Z' && c != 'X'; });
    auto execing = std::count_if(st.begin(), st.end(), [](char c) { return c == 'D' || c == 't'; });
    return live == 1 && execing == 1;
  })) << "the target did not begin its execve";
  ASSERT_NO_FATAL_FAILURE(resume_paused_controller(apply.pid()));
  CliRun r = apply.finish();
  ASSERT_TRUE(r.json.is_object()) << r.out << r.err;
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_EQ(r.json.value("kind", ""), "thread_died") << r.out;
  const std::string error = r.json.value("error", "");
  EXPECT_NE(error.find("process " + pid + " replaced its program (execve) while"), std::string::npos) << error << "\n" << r.err;
  EXPECT_NE(error.find("nothing of it is in the new program"), std::string::npos) << error;
  EXPECT_EQ(error.find("could not inject"), std::string::npos) << error;
  expect_new_program_unharmed(t);
}

// The thread stopped and checked; the trampoline mapping being made (a remote mmap); dlopen
// running; dlopen returned and the thread put back.
INSTANTIATE_TEST_SUITE_P(Steps, ExecDuringInjection,
                         ::testing::Values("inject.thread_stopped", "inject.syscall_started", "inject.call_started",
                                           "inject.dlopen_done"),
                         [](const auto& info) {
                           std::string name = std::string(info.param).substr(7);
                           name.erase(std::remove(name.begin(), name.end(), '_'), name.end());
                           return name;
                         });

// The target is SIGKILLed while the agent is being injected: "inject_library retries until
// timeout when target dies" — it used to try the (gone) threads again until --timeout and
// report "could not inject ... no thread was at a safe point".
TEST(TargetDeath, KilledWhileTheAgentIsInjectedIsSaidAtOnce) {
  Target t(target_path("pt_exec"));
  const std::string pid = std::to_string(t.pid());
  CliProcess apply({"--json", "apply", "--model", "per-thread", "--timeout", "60", pid, patch_path("pt_pair_fix")},
                   {"LIVEGRAFT_PAUSE_AT=inject.call_started"});
  ASSERT_TRUE(apply.wait_for_stderr("paused at kill point inject.call_started"));
  ASSERT_EQ(::kill(t.pid(), SIGKILL), 0);
  // Its threads die at once; they stay zombies until their (paused) tracer collects them.
  ASSERT_TRUE(wait_until([&] {
    auto st = thread_states(t.pid());
    return std::all_of(st.begin(), st.end(), [](char c) { return c == 'Z' || c == 'X'; });
  })) << "the target did not die";
  ASSERT_NO_FATAL_FAILURE(resume_paused_controller(apply.pid()));
  CliRun r = apply.finish();
  ASSERT_TRUE(r.json.is_object()) << r.out << r.err;
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_EQ(r.json.value("kind", ""), "thread_died") << r.out;
  const std::string error = r.json.value("error", "");
  EXPECT_NE(error.find("process " + pid + " was killed by signal 9 (SIGKILL) while"), std::string::npos) << error;
  EXPECT_EQ(error.find("could not inject"), std::string::npos) << error;
  EXPECT_FALSE(t.alive());
}

}  // namespace
}  // namespace lg::e2e
