// The per-thread model under load (docs/consistency.md, "Tests"): a patch that changes the
// encoding, the decoding and the handler that calls both (tests/patches/pt_format_fix.c) is
// applied and reverted many times while workers spend half their time inside the handler,
// blocked in a system call there (tests/programs/pt_format.c). Not one request may mix the
// formats, every transition must complete, and no moment may have every thread stopped.
// The same with threads created and exiting all the time (thread churn).
#include <gtest/gtest.h>

#include <cstdio>

#include "per_thread_support.h"

namespace lg::e2e {
namespace {

using namespace std::chrono_literals;

struct Counts {
  long old_ok = -1, new_ok = -1, bad = -1, threads = -1;
};

Counts counts(Target& t) {
  Counts c;
  std::string line = t.ask("s");
  if (std::sscanf(line.c_str(), "old %ld new %ld bad %ld threads %ld", &c.old_ok, &c.new_ok, &c.bad, &c.threads) != 4)
    ADD_FAILURE() << "unexpected answer: " << line;
  return c;
}

// Waits until [more] requests were handled by the version [new_version] since [from]; meanwhile
// the other version must handle none (the transition completed: nobody runs it any more).
void expect_only_version(Target& t, const Counts& from, bool new_version, long more) {
  auto deadline = std::chrono::steady_clock::now() + 10s;
  for (;;) {
    Counts c = counts(t);
    ASSERT_EQ(new_version ? c.old_ok : c.new_ok, new_version ? from.old_ok : from.new_ok)
        << "a request ran the " << (new_version ? "old" : "new") << " handler after the transition completed";
    if ((new_version ? c.new_ok - from.new_ok : c.old_ok - from.old_ok) >= more) return;
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the workers stopped handling requests";
    std::this_thread::sleep_for(2ms);
  }
}

struct CycleStats {
  int transitions = 0, max_rounds = 0;
  long longest_stop_us = 0, longest_total_us = 0;
};

// [cycles] apply+revert of pt_format_fix on [t] (agent injected), each checked.
void run_cycles(Target& t, int cycles, CycleStats& st, long per_cycle_requests) {
  const std::string pid = std::to_string(t.pid());
  for (int i = 0; i < cycles; ++i) {
    SCOPED_TRACE("cycle " + std::to_string(i));
    for (bool apply : {true, false}) {
      CliRun r = apply ? pt({"--json", "apply", "--timeout", "20", pid, patch_path("pt_format_fix")})
                       : pt({"--json", "revert", "--timeout", "20", pid, "pt-format-fix"});
      ASSERT_EQ(r.exit_code, 0) << (apply ? "apply: " : "revert: ") << r.err << r.out;
      const auto& tr = r.json["transition"];
      EXPECT_EQ(tr["model"], "per-thread");
      EXPECT_EQ(tr["max_stopped_threads"].get<int>(), 1) << r.out;
      ++st.transitions;
      st.max_rounds = std::max(st.max_rounds, tr["rounds"].get<int>());
      st.longest_stop_us = std::max(st.longest_stop_us, tr["longest_stop_us"].get<long>());
      st.longest_total_us = std::max(st.longest_total_us, tr["total_us"].get<long>());
      Counts now = counts(t);
      ASSERT_EQ(now.bad, 0) << "a request decoded with the other version's format";
      expect_only_version(t, now, apply, per_cycle_requests);
    }
  }
}

TEST(PerThreadLoad, PairedFormatChangeAppliedAndRevertedUnderLoadNeverMixesFormats) {
  Target t(target_path("pt_format"), {"8"});
  const std::string pid = std::to_string(t.pid());
  // Injecting is not part of a transition (its remote dlopen stops everyone): done first.
  ASSERT_EQ(livegraft({"inject", pid}).exit_code, 0);
  Counts before = counts(t);
  EXPECT_EQ(before.threads, 8);
  CycleStats st;
  int samples = 0;
  bool all_stopped = false;
  {
    StopSampler sampler(t.pid());
    run_cycles(t, 20, st, 16);
    samples = sampler.samples();
    all_stopped = sampler.all_stopped_seen();
  }
  Counts end = counts(t);
  std::printf("[ load ] %d transitions, %ld requests old, %ld new, %ld mixed; most rounds %d, longest stop %ld us, "
              "longest transition %ld us; %d samples of /proc\n",
              st.transitions, end.old_ok, end.new_ok, end.bad, st.max_rounds, st.longest_stop_us, st.longest_total_us, samples);
  EXPECT_EQ(st.transitions, 40);
  EXPECT_EQ(end.bad, 0);
  EXPECT_GT(end.new_ok, 0);
  // The workers were inside the handler when the transitions began: some had to wait.
  EXPECT_GT(st.max_rounds, 1);
  EXPECT_GT(samples, 100);
  EXPECT_FALSE(all_stopped) << "a sample of /proc/PID/task had every thread stopped";
  CliRun s = livegraft({"--json", "status", pid});
  EXPECT_EQ(s.json["patches"].size(), 0u) << s.out;
  EXPECT_TRUE(s.json["transition"].is_null()) << s.out;
  EXPECT_TRUE(t.alive());
}

// The checks can fail: stop-the-world (every thread stopped, switched together) also never
// mixes formats, but the sampler sees its global stop; and a forced transition (threads
// switched without the stack check) does mix them.
TEST(PerThreadLoad, ForcingTheSwitchWithoutTheStackCheckMixesFormats) {
  Target t(target_path("pt_format"), {"8"});
  const std::string pid = std::to_string(t.pid());
  ASSERT_EQ(livegraft({"inject", pid}).exit_code, 0);
  long bad = 0;
  // Faster stops let a transition complete before a short timeout more and more often (then
  // there is nothing to force): many tries, with ever shorter timeouts.
  const char* timeouts[] = {"0.02", "0.01", "0.005", "0.002"};
  for (int i = 0; i < 40 && bad == 0; ++i) {
    // A transition that cannot finish at once (on-timeout keep, a short timeout), then forced.
    CliRun k = pt({"apply", "--timeout", timeouts[i % 4], "--on-timeout", "keep", pid, patch_path("pt_format_fix")});
    if (k.exit_code != 0 && !livegraft({"--json", "status", pid}).json["transition"].is_object()) {
      // It timed out while the entry jumps were being written: undone, nothing to force.
      continue;
    }
    if (k.exit_code == 5 && livegraft({"--json", "status", pid}).json["transition"].value("phase", "") == "poking") {
      // Kept before its entry jumps were written (a loaded machine): force refuses that phase by
      // design; take it back and try again.
      ASSERT_EQ(pt({"revert", "--timeout", "20", pid, "pt-format-fix"}).exit_code, 0);
      continue;
    }
    if (k.exit_code == 5) {
      CliRun f = livegraft({"force", pid});
      ASSERT_EQ(f.exit_code, 0) << f.err;
    } else {
      ASSERT_EQ(k.exit_code, 0) << k.err;
    }
    std::this_thread::sleep_for(20ms);  // the forced workers leave their handlers
    bad = counts(t).bad;
    ASSERT_EQ(pt({"revert", "--timeout", "20", pid, "pt-format-fix"}).exit_code, 0);
  }
  EXPECT_GT(bad, 0) << "forcing threads inside the handler never produced a mixed request: the check cannot fail";
}

TEST(PerThreadLoad, ThreadsCreatedAndExitingDuringTransitionsRunTheRightVersion) {
  Target t(target_path("pt_format"), {"6", "churn"});
  const std::string pid = std::to_string(t.pid());
  ASSERT_EQ(livegraft({"inject", pid}).exit_code, 0);
  Counts before = counts(t);
  CycleStats st;
  run_cycles(t, 10, st, 12);
  Counts end = counts(t);
  std::printf("[ churn ] %d transitions, %ld threads started (%ld during the run), %ld requests old, %ld new, %ld mixed\n",
              st.transitions, end.threads, end.threads - before.threads, end.old_ok, end.new_ok, end.bad);
  EXPECT_EQ(st.transitions, 20);
  EXPECT_EQ(end.bad, 0);
  // Threads were born and exited during the transitions, not just between them.
  EXPECT_GT(end.threads - before.threads, 100);
  EXPECT_TRUE(t.alive());
  CliRun s = livegraft({"--json", "status", pid});
  EXPECT_EQ(s.json["patches"].size(), 0u) << s.out;
  EXPECT_TRUE(s.json["transition"].is_null()) << s.out;
}

}  // namespace
}  // namespace lg::e2e
