// Worker threads that block SIGTRAP (HAProxy 2.6 blocks every signal but SIGPROF, SIGBUS,
// SIGFPE, SIGILL and SIGSEGV in all its threads: src/thread.c setup_extra_threads()). The
// per-thread and immediate models write each entry jump with the text_poke protocol: an int3
// first, which a thread calling the function meanwhile executes. With SIGTRAP blocked the kernel
// does not run the agent's handler: it resets SIGTRAP to the default action and the process
// dumps core (found by applying CVE-2023-40225's fix to haproxy under load: "process died
// during apply", haproxy exit status 133). Per-thread unblocks SIGTRAP in those threads while its
// int3s may be in place; immediate refuses; stop-the-world writes while every thread is stopped,
// with no int3. (docs/consistency.md, "Threads that block SIGTRAP"; docs/field-notes.md.)
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"

namespace lg::e2e {
namespace {

// A field of /proc/PID/task/TID/status, parsed as hex (SigBlk, SigPnd).
uint64_t status_hex(pid_t pid, pid_t tid, const std::string& field) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind(field + ":", 0) == 0) return std::stoull(line.substr(field.size() + 1), nullptr, 16);
  return 0;
}

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

constexpr uint64_t kTrap = uint64_t{1} << (SIGTRAP - 1);
bool blocks_sigtrap(uint64_t mask) { return mask & kTrap; }
// glibc blocks every signal, 32 and 33 included, while a thread starts: not the worker's own mask yet.
bool glibc_block_all(uint64_t mask) { return (mask & (uint64_t{3} << 31)) == (uint64_t{3} << 31); }

// The workers' masks once all three run their loop with their own (SIGTRAP blocked) mask.
std::map<pid_t, uint64_t> settled_worker_masks(pid_t pid) {
  std::map<pid_t, uint64_t> m;
  for (int i = 0; i < 2000; i++) {
    m = worker_masks(pid);
    bool settled = m.size() == 3;
    for (auto [tid, mask] : m) settled &= blocks_sigtrap(mask) && !glibc_block_all(mask);
    if (settled) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return m;
}

int cycles_from_env(int fallback) {
  const char* v = std::getenv("LIVEGRAFT_TEST_SIGTRAP_CYCLES");  // the stress loop of docs/consistency.md
  return v && std::atoi(v) > 0 ? std::atoi(v) : fallback;
}

// The per-thread model unblocks SIGTRAP in those workers while its int3s are in place (each
// stopped alone for it), then blocks it again: the workers keep calling the function through
// every int3 phase, many times over, and the process lives and answers right. It was killed
// (SIGTRAP, core) on the first apply before the unblocking; with the unblocking but without
// taking a trap still queued when the mask is put back, about one cycle in 200 under load left a
// worker with a trap queued behind its mask, which killed the process at the next unblocking.
// Applies [patch] with [model] and reverts it, [default_cycles] times (LIVEGRAFT_TEST_SIGTRAP_CYCLES
// overrides), on stranger_sigblock: after each step the target is alive and answers for the
// version in place, the workers' masks are back and no trap is queued for them. [revert_says]:
// the revert reports unblocking SIGTRAP too (it writes int3s outside a consistency check).
void cycle_while_workers_block_sigtrap(const std::string& model, const std::string& patch, int default_cycles,
                                       bool revert_says) {
  Target t(target_path("stranger_sigblock"));
  const std::string pid = std::to_string(t.pid());
  ASSERT_EQ(t.ask("c"), "1");
  const std::map<pid_t, uint64_t> before = settled_worker_masks(t.pid());
  ASSERT_EQ(before.size(), 3u);
  for (auto [tid, m] : before) ASSERT_TRUE(blocks_sigtrap(m) && !glibc_block_all(m)) << tid;
  const int cycles = cycles_from_env(default_cycles);
  for (int i = 0; i < cycles; i++) {
    CliRun a = livegraft({"-v", "apply", "--model", model, pid, patch_path(patch)});
    ASSERT_TRUE(t.alive()) << "cycle " << i << ": the target died during the apply: " << a.err << a.out;
    ASSERT_EQ(a.exit_code, 0) << a.err << a.out;
    EXPECT_NE(a.err.find("unblocking SIGTRAP in 3 thread(s) that block it"), std::string::npos) << a.err;
    EXPECT_EQ(t.ask("c"), "2");
    EXPECT_EQ(worker_masks(t.pid()), before) << "the workers' masks were not put back";
    for (auto [tid, m] : before) EXPECT_FALSE(status_hex(t.pid(), tid, "SigPnd") & kTrap) << "a trap is left queued in " << tid;
    CliRun r = livegraft({"-v", "revert", "--model", model, pid, "stranger-sigblock-fix"});
    ASSERT_TRUE(t.alive()) << "cycle " << i << ": the target died during the revert: " << r.err;
    ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
    if (revert_says) {
      EXPECT_NE(r.err.find("unblocking SIGTRAP in 3 thread(s) that block it"), std::string::npos) << r.err;
    }
    EXPECT_EQ(t.ask("c"), "1");
    EXPECT_EQ(worker_masks(t.pid()), before) << "the workers' masks were not put back";
    for (auto [tid, m] : before) EXPECT_FALSE(status_hex(t.pid(), tid, "SigPnd") & kTrap) << "a trap is left queued in " << tid;
  }
}

TEST(StrangerSigtrap, PerThreadAppliesAndRevertsWhileWorkersBlockingSigtrapRun) {
  cycle_while_workers_block_sigtrap("per-thread", "stranger_sigblock_fix", 20, false);
}

// Leaves the main thread of [t] blocking SIGTRAP with a breakpoint trap (SI_KERNEL) queued
// behind its mask, the state a restore that blocked SIGTRAP again in a thread interrupted just
// as it executed an int3 left behind: the test traces the thread, has it execute an int3, blocks
// SIGTRAP at the signal-delivery-stop and passes the signal on, which the kernel queues again
// because it is blocked now (kernel/signal.c, ptrace_signal), keeping its siginfo.
void queue_trap_behind_mask(Target& t) {
  const pid_t pid = t.pid();
  ASSERT_EQ(ptrace(PTRACE_SEIZE, pid, nullptr, nullptr), 0) << errno;
  t.send("t");
  int status = 0;
  for (;;) {
    ASSERT_EQ(waitpid(pid, &status, __WALL), pid);
    ASSERT_TRUE(WIFSTOPPED(status));
    if (WSTOPSIG(status) == SIGTRAP && (status >> 16) == 0) break;
    ASSERT_EQ(ptrace(PTRACE_CONT, pid, nullptr, (status >> 16) ? nullptr : reinterpret_cast<void*>(WSTOPSIG(status))), 0);
  }
  siginfo_t info{};
  ASSERT_EQ(ptrace(PTRACE_GETSIGINFO, pid, nullptr, &info), 0);
  ASSERT_EQ(info.si_code, SI_KERNEL);
  uint64_t mask = 0;
  ASSERT_EQ(ptrace(PTRACE_GETSIGMASK, pid, reinterpret_cast<void*>(sizeof mask), &mask), 0);
  mask |= kTrap;
  ASSERT_EQ(ptrace(PTRACE_SETSIGMASK, pid, reinterpret_cast<void*>(sizeof mask), &mask), 0);
  ASSERT_EQ(ptrace(PTRACE_CONT, pid, nullptr, reinterpret_cast<void*>(SIGTRAP)), 0);
  ASSERT_EQ(ptrace(PTRACE_INTERRUPT, pid, nullptr, nullptr), 0);
  for (;;) {
    ASSERT_EQ(waitpid(pid, &status, __WALL), pid);
    ASSERT_TRUE(WIFSTOPPED(status));
    if ((status >> 16) == PTRACE_EVENT_STOP) break;
    ASSERT_EQ(ptrace(PTRACE_CONT, pid, nullptr, (status >> 16) ? nullptr : reinterpret_cast<void*>(WSTOPSIG(status))), 0);
  }
  ASSERT_EQ(ptrace(PTRACE_DETACH, pid, nullptr, nullptr), 0);
  ASSERT_EQ(t.read_line(), "trapped");
  ASSERT_TRUE(status_hex(pid, pid, "SigBlk") & kTrap);
  ASSERT_TRUE(status_hex(pid, pid, "SigPnd") & kTrap);
}

// Such a trap would be delivered wherever the thread is as soon as SIGTRAP is unblocked: not at
// a site of the agent's, so its handler gives it to the default action, a core dump. The
// per-thread apply refuses before anything is changed. The negative control: with the check and
// the trap-taking switched off (LIVEGRAFT_TEST_KEEP_PENDING_SIGTRAP, for tests only) the same
// apply kills the process with SIGTRAP, which is what the stress loop hit about once in 200 cycles.
TEST(StrangerSigtrap, ThreadWithATrapQueuedBehindItsMaskIsRefusedAndTheProcessLives) {
  Target t(target_path("stranger_sigblock"));
  const std::string pid = std::to_string(t.pid());
  ASSERT_EQ(t.ask("c"), "1");
  ASSERT_NO_FATAL_FAILURE(queue_trap_behind_mask(t));
  CliRun a = livegraft({"apply", "--model", "per-thread", pid, patch_path("stranger_sigblock_fix")});
  ASSERT_TRUE(t.alive()) << "the target died during the apply: " << a.err << a.out;
  EXPECT_EQ(a.exit_code, 5) << a.err << a.out;
  EXPECT_NE(a.err.find("breakpoint trap waiting in its queue"), std::string::npos) << a.err;
  EXPECT_EQ(t.ask("c"), "1");
  for (auto [tid, m] : settled_worker_masks(t.pid())) EXPECT_TRUE(blocks_sigtrap(m)) << "worker " << tid << " left unblocked";
  CliRun s = livegraft({"--json", "status", pid});
  ASSERT_EQ(s.exit_code, 0) << s.err;
  EXPECT_TRUE(s.json["patches"].empty()) << s.out;
}

TEST(StrangerSigtrap, NegativeControlTrapQueuedBehindTheMaskKillsTheProcessWhenUnblocked) {
  Target t(target_path("stranger_sigblock"));
  const std::string pid = std::to_string(t.pid());
  ASSERT_EQ(t.ask("c"), "1");
  ASSERT_NO_FATAL_FAILURE(queue_trap_behind_mask(t));
  CliRun a = livegraft_env({"apply", "--model", "per-thread", pid, patch_path("stranger_sigblock_fix")},
                           {"LIVEGRAFT_TEST_KEEP_PENDING_SIGTRAP=1"});
  EXPECT_NE(a.exit_code, 0) << a.err << a.out;
  EXPECT_NE(a.err.find("killed by signal 5 (SIGTRAP)"), std::string::npos) << a.err;
  EXPECT_FALSE(t.alive());
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

// The immediate model writes the same int3s (the entry jumps, and the original bytes back when
// a revert completes) without a consistency check: it unblocks SIGTRAP in those threads the same
// way, holding the process from the first int3 to the last. It refused such targets before.
TEST(StrangerSigtrap, ImmediateAppliesAndRevertsWhileWorkersBlockingSigtrapRun) {
  cycle_while_workers_block_sigtrap("immediate", "stranger_sigblock_fix_immediate", 10, true);
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
