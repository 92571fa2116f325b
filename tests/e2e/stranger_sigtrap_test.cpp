// Worker threads that block SIGTRAP (HAProxy 2.6 blocks every signal but SIGPROF, SIGBUS,
// SIGFPE, SIGILL and SIGSEGV in all its threads: src/thread.c setup_extra_threads()). The
// per-thread and immediate models write each entry jump with the text_poke protocol: an int3
// first, which a thread calling the function meanwhile executes. With SIGTRAP blocked the kernel
// does not run the agent's handler: it resets SIGTRAP to the default action and the process
// dumps core (found by applying CVE-2023-40225's fix to haproxy under load: "process died
// during apply", haproxy exit status 133). Stop-the-world writes while every thread is stopped,
// with no int3: it works. (docs/field-notes.md, session 5.)
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "harness.h"

namespace lg::e2e {
namespace {

// The SigBlk line of /proc/PID/task/TID/status of every thread but the main one and the
// agent's (the workers), by tid.
std::map<pid_t, uint64_t> worker_masks(pid_t pid) {
  std::map<pid_t, uint64_t> out;
  for (const auto& task : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task")) {
    if (task.path().filename() == std::to_string(pid)) continue;
    std::ifstream status(task.path() / "status");
    std::string name, line;
    uint64_t mask = 0;
    bool have = false;
    while (std::getline(status, line)) {
      if (line.rfind("Name:", 0) == 0) name = line;
      if (line.rfind("SigBlk:", 0) == 0) mask = std::stoull(line.substr(7), nullptr, 16), have = true;
    }
    if (have && name.find("livegraft-") == std::string::npos) out[std::stoi(task.path().filename())] = mask;
  }
  return out;
}

bool blocks_sigtrap(uint64_t mask) { return mask & (uint64_t{1} << (SIGTRAP - 1)); }

// The per-thread model unblocks SIGTRAP in those workers while its int3s are in place (each
// stopped alone for it), then blocks it again: the workers keep calling the function through
// every int3 phase, 20 times over, and the process lives. It was killed (SIGTRAP, core) on the
// first apply before, then refused.
TEST(StrangerSigtrap, PerThreadAppliesAndRevertsWhileWorkersBlockingSigtrapRun) {
  Target t(target_path("stranger_sigblock"));
  const std::string pid = std::to_string(t.pid());
  ASSERT_EQ(t.ask("c"), "1");
  const std::map<pid_t, uint64_t> before = worker_masks(t.pid());
  ASSERT_EQ(before.size(), 3u);
  for (auto [tid, m] : before) ASSERT_TRUE(blocks_sigtrap(m)) << tid;
  for (int i = 0; i < 20; i++) {
    CliRun a = livegraft({"-v", "apply", "--model", "per-thread", pid, patch_path("stranger_sigblock_fix")});
    ASSERT_TRUE(t.alive()) << "the target died during the apply: " << a.err << a.out;
    ASSERT_EQ(a.exit_code, 0) << a.err << a.out;
    EXPECT_NE(a.err.find("unblocking SIGTRAP in 3 thread(s) that block it"), std::string::npos) << a.err;
    EXPECT_EQ(t.ask("c"), "2");
    EXPECT_EQ(worker_masks(t.pid()), before) << "the workers' masks were not put back";
    CliRun r = livegraft({"revert", "--model", "per-thread", pid, "stranger-sigblock-fix"});
    ASSERT_TRUE(t.alive()) << r.err;
    ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
    EXPECT_EQ(t.ask("c"), "1");
  }
  EXPECT_EQ(worker_masks(t.pid()), before);
}

// A controller killed while the int3s are in place leaves SIGTRAP unblocked in those workers
// (the safe side: nobody is left to block it again): they keep running through the int3s, and
// the next apply finishes the transition.
TEST(StrangerSigtrap, ControllerKilledWithTheInt3sInPlaceLeavesTheWorkersAbleToMeetThem) {
  Target t(target_path("stranger_sigblock"));
  const std::string pid = std::to_string(t.pid());
  CliRun k = livegraft_env({"-v", "apply", "--model", "per-thread", pid, patch_path("stranger_sigblock_fix")},
                           {"LIVEGRAFT_KILL_AT=apply.per_thread_switch_early"});
  ASSERT_NE(k.exit_code, 0) << "the kill point was not reached: " << k.err;
  ASSERT_TRUE(t.alive()) << k.err;
  CliRun s = livegraft({"--json", "status", pid});
  ASSERT_EQ(s.exit_code, 0) << s.err;
  ASSERT_EQ(s.json["transition"].value("phase", ""), "poking") << s.out;
  // A worker inside the agent's SIGTRAP handler has SIGTRAP blocked for the handler's time (the
  // kernel adds it): each must be seen without it at least once.
  std::set<pid_t> seen_unblocked;
  for (int i = 0; i < 2000 && seen_unblocked.size() < 3; i++)
    for (auto [tid, m] : worker_masks(t.pid()))
      if (!blocks_sigtrap(m)) seen_unblocked.insert(tid);
  EXPECT_EQ(seen_unblocked.size(), 3u) << k.err;
  for (int i = 0; i < 20; i++) ASSERT_NE(t.ask("c"), "") << "a worker died on an int3";  // they call answer() through the int3
  ASSERT_TRUE(t.alive());
  CliRun a = livegraft({"apply", "--model", "per-thread", pid, patch_path("stranger_sigblock_fix")});
  ASSERT_EQ(a.exit_code, 0) << a.err << a.out;
  EXPECT_EQ(t.ask("c"), "2");
  CliRun r = livegraft({"revert", "--model", "per-thread", pid, "stranger-sigblock-fix"});
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  EXPECT_EQ(t.ask("c"), "1");
}

TEST(StrangerSigtrap, ImmediateApplyToWorkersBlockingSigtrapIsRefusedToo) {
  Target t(target_path("stranger_sigblock"));
  const std::string pid = std::to_string(t.pid());
  CliRun a = livegraft({"apply", "--model", "immediate", pid, patch_path("stranger_sigblock_fix_immediate")});
  ASSERT_TRUE(t.alive()) << "the target died during the apply: " << a.err << a.out;
  EXPECT_EQ(a.exit_code, 5) << a.err << a.out;
  EXPECT_NE(a.err.find("block SIGTRAP"), std::string::npos) << a.err;
  EXPECT_NE(a.err.find("--model per-thread"), std::string::npos) << a.err;
  EXPECT_EQ(t.ask("c"), "1");
}

TEST(StrangerSigtrap, StopTheWorldAppliesAndRevertsWhileTheWorkersRun) {
  Target t(target_path("stranger_sigblock"));
  const std::string pid = std::to_string(t.pid());
  for (int i = 0; i < 5; i++) {
    CliRun a = livegraft({"apply", "--model", "stop-the-world", pid, patch_path("stranger_sigblock_fix")});
    ASSERT_EQ(a.exit_code, 0) << a.err << a.out;
    ASSERT_TRUE(t.alive());
    EXPECT_EQ(t.ask("c"), "2");
    CliRun r = livegraft({"revert", "--model", "stop-the-world", pid, "stranger-sigblock-fix"});
    ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
    ASSERT_TRUE(t.alive());
    EXPECT_EQ(t.ask("c"), "1");
  }
}

}  // namespace
}  // namespace lg::e2e
