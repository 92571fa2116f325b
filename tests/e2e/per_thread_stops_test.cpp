// The per-thread paths never have every thread stopped at once: injecting the agent (its remote
// dlopen and the detach after it), a per-thread apply and revert (both passes and the detach).
// Two witnesses: the controller's own count of the stops it collected (Process::stop_record,
// reported by `inject --json` and `apply|revert --json`), and an outside sampler of
// /proc/PID/task/*/stat.
#include <dirent.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <thread>

#include "harness.h"
#include "per_thread_support.h"

namespace lg::e2e {
namespace {

// Two idle threads besides main: every stop of ours is counted against three live threads.
TEST(PerThreadStops, InjectApplyAndRevertNeverStopEveryThread) {
  Target t(target_path("idle_threads"), {"2"});
  const std::string pid = std::to_string(t.pid());
  ASSERT_EQ(t.ask("c"), "11");
  StopSampler sampler(t.pid());

  CliRun inj = livegraft({"--json", "inject", pid});
  ASSERT_EQ(inj.exit_code, 0) << inj.err << inj.out;
  ASSERT_TRUE(inj.json.contains("stops")) << inj.out;
  EXPECT_EQ(inj.json["stops"]["all_stopped_moments"].get<int>(), 0) << "injection stopped every thread: " << inj.out;
  EXPECT_GE(inj.json["stops"]["max_stopped_threads"].get<int>(), 1) << inj.out;  // it did stop threads
  EXPECT_LE(inj.json["stops"]["max_stopped_threads"].get<int>(), 1) << inj.out;

  for (int i = 0; i < 3; ++i) {
    CliRun a = livegraft({"--json", "apply", "--model", "per-thread", pid, patch_path("compute_plus2")});
    ASSERT_EQ(a.exit_code, 0) << a.err << a.out;
    EXPECT_EQ(a.json["transition"]["max_stopped_threads"].get<int>(), 1) << a.out;
    EXPECT_EQ(a.json["transition"]["all_stopped_moments"].get<int>(), 0) << a.out;
    EXPECT_EQ(t.ask("c"), "12");
    CliRun r = livegraft({"--json", "revert", "--model", "per-thread", pid, "compute-plus2"});
    ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
    EXPECT_EQ(r.json["transition"]["max_stopped_threads"].get<int>(), 1) << r.out;
    EXPECT_EQ(r.json["transition"]["all_stopped_moments"].get<int>(), 0) << r.out;
    EXPECT_EQ(t.ask("c"), "11");
  }
  EXPECT_GT(sampler.samples(), 10);
  EXPECT_FALSE(sampler.all_stopped_seen()) << "a sample of /proc/PID/task had every thread stopped";
  EXPECT_EQ(t.quit(), 0);
}

}  // namespace
}  // namespace lg::e2e
