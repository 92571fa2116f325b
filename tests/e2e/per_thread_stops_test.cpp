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

namespace lg::e2e {
namespace {

// Samples /proc/PID/task/*/stat for a moment with every thread in a stop ('t' or 'T'). One
// sweep is not atomic (threads stopped one after the other in the order of the sweep would look
// like "all stopped"), so a sweep that finds every thread stopped is confirmed by a second sweep
// in the other order. (The same sampler as per_thread_test.cpp, whose
// SamplerSeesTheGlobalStopOfStopTheWorld shows it can fail.)
class StopSampler {
 public:
  explicit StopSampler(pid_t pid) : pid_(pid), thread_([this] { run(); }) {}
  ~StopSampler() {
    done_ = true;
    thread_.join();
  }
  int samples() const { return samples_; }
  bool all_stopped_seen() const { return all_stopped_; }

 private:
  std::pair<int, int> sweep(bool backwards) {
    std::string dir = "/proc/" + std::to_string(pid_) + "/task";
    std::vector<std::string> tids;
    if (DIR* d = opendir(dir.c_str())) {
      while (dirent* e = readdir(d))
        if (e->d_name[0] != '.') tids.push_back(e->d_name);
      closedir(d);
    }
    if (backwards) std::reverse(tids.begin(), tids.end());
    int total = 0, stopped = 0;
    for (const auto& tid : tids) {
      std::ifstream in(dir + "/" + tid + "/stat");
      std::string s;
      std::getline(in, s);
      auto close = s.rfind(')');
      if (close == std::string::npos || close + 2 >= s.size()) continue;
      char st = s[close + 2];
      ++total;
      if (st == 't' || st == 'T') ++stopped;
    }
    return {total, stopped};
  }
  void run() {
    bool backwards = false;
    while (!done_) {
      auto [total, stopped] = sweep(backwards);
      backwards = !backwards;
      if (total == 0) continue;
      ++samples_;
      if (stopped == total) {
        auto [total2, stopped2] = sweep(backwards);
        if (total2 > 0 && stopped2 == total2) all_stopped_ = true;
      }
    }
  }
  pid_t pid_;
  std::atomic<bool> done_{false};
  std::atomic<int> samples_{0};
  std::atomic<bool> all_stopped_{false};
  std::thread thread_;
};

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
