// How long every thread is stopped during `apply`, for targets with 10, 100 and 1000 idle
// threads, against the time it takes just to ptrace-stop and resume the same threads, in the
// same run. Iteration times are manual: the stop window of each operation.
#include <benchmark/benchmark.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "controller/operations.h"
#include "process/process.h"

namespace {

// One idle_threads target per thread count, started once and killed at exit.
struct IdleTarget {
  pid_t pid = -1;
  int in = -1;
  explicit IdleTarget(int threads) {
    int p[2], q[2];
    if (pipe(p) != 0 || pipe(q) != 0) return;
    pid = fork();
    if (pid == 0) {
      dup2(p[0], 0);
      dup2(q[1], 1);
      std::string exe = std::string(LG_BINARY_DIR) + "/targets/idle_threads";
      std::string n = std::to_string(threads);
      execl(exe.c_str(), exe.c_str(), n.c_str(), nullptr);
      _exit(127);
    }
    close(p[0]);
    close(q[1]);
    in = p[1];
    char buf[16];
    (void)!read(q[0], buf, 6);  // "ready\n"
    close(q[0]);
  }
  ~IdleTarget() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    if (in >= 0) close(in);
  }
};

IdleTarget& target(int threads) {
  static std::map<int, std::unique_ptr<IdleTarget>> targets;
  auto& t = targets[threads];
  if (!t) t = std::make_unique<IdleTarget>(threads);
  return *t;
}

void BM_ptrace_stop_resume(benchmark::State& state) {
  auto& t = target(static_cast<int>(state.range(0)));
  auto process = lg::Process::seize(t.pid);
  if (!process) return state.SkipWithError(process.error().message.c_str());
  for (auto _ : state) {
    auto start = std::chrono::steady_clock::now();
    auto s = (*process)->stop_all(std::chrono::seconds(10));
    auto r = (*process)->resume_all();
    auto end = std::chrono::steady_clock::now();
    if (!s || !r) return state.SkipWithError("stop/resume failed");
    state.SetIterationTime(std::chrono::duration<double>(end - start).count());
  }
}

void BM_apply_stop_window(benchmark::State& state) {
  auto& t = target(static_cast<int>(state.range(0)));
  lg::OperationOptions options;
  options.agent_path = std::string(LG_BINARY_DIR) + "/liblivegraft-agent.so";
  std::string patch = std::string(LG_BINARY_DIR) + "/patches/compute_plus2.o";
  for (auto _ : state) {
    auto a = lg::apply_patch(t.pid, patch, options);
    if (!a) return state.SkipWithError(a.error().message.c_str());
    state.SetIterationTime((*a)["transition"]["stopped_us"].get<double>() / 1e6);
    state.PauseTiming();
    auto r = lg::revert_patch(t.pid, "compute-plus2", options);
    state.ResumeTiming();
    if (!r) return state.SkipWithError(r.error().message.c_str());
  }
}

}  // namespace

BENCHMARK(BM_ptrace_stop_resume)->Arg(10)->Arg(100)->Arg(1000)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_apply_stop_window)->Arg(10)->Arg(100)->Arg(1000)->UseManualTime()->Unit(benchmark::kMicrosecond);

BENCHMARK_MAIN();
