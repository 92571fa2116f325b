// Shared by the per_thread_*_test.cpp suites: `livegraft` with `--model per-thread`, and a
// sampler of /proc/PID/task/*/stat that watches for a moment with every thread stopped.
#pragma once

#include <dirent.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"

namespace lg::e2e {

// `livegraft ... apply|revert --model per-thread ...`
inline CliRun pt(std::vector<std::string> args, const std::vector<std::string>& env = {}) {
  auto sub = std::find_if(args.begin(), args.end(), [](const std::string& a) { return a == "apply" || a == "revert"; });
  if (sub != args.end()) args.insert(sub + 1, {"--model", "per-thread"});
  return env.empty() ? livegraft(args) : livegraft_env(args, env);
}

// Asks "c" until the answer is [want]; every answer on the way must be [before] (never a mix).
inline void wait_for_answer(Target& t, const std::string& before, const std::string& want) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (;;) {
    std::string v = t.ask("c");
    if (v == want) return;
    ASSERT_EQ(v, before) << "a call chain mixed versions";
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the main thread never switched";
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

// Samples /proc/PID/task/*/stat for a moment with every thread in a stop ('t' or 'T'). One
// sweep over the tasks is not atomic (a controller stopping threads one after the other in the
// order of the sweep would look like "all stopped"), so a sweep that finds every thread stopped
// is confirmed by a second sweep in the other order. (tests/e2e/per_thread_test.cpp shows it
// does see the stop of a stop-the-world switch.)
class StopSampler {
 public:
  explicit StopSampler(pid_t pid) : pid_(pid), thread_([this] { run(); }) {}
  ~StopSampler() {
    done_ = true;
    thread_.join();
  }
  int samples() const { return samples_; }
  bool all_stopped_seen() const { return all_stopped_; }
  int max_stopped() const { return max_stopped_; }  // the most threads seen stopped in one sweep

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
      if (stopped > max_stopped_) max_stopped_ = stopped;
      if (stopped == total) {
        auto [total2, stopped2] = sweep(backwards);
        if (total2 > 0 && stopped2 == total2) all_stopped_ = true;
      }
    }
  }
  pid_t pid_;
  std::atomic<bool> done_{false};
  std::atomic<int> samples_{0};
  std::atomic<int> max_stopped_{0};
  std::atomic<bool> all_stopped_{false};
  std::thread thread_;
};

}  // namespace lg::e2e
