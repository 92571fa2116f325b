// The cost of a call during a per-thread transition (entry jmp -> stub -> jmp *slot -> dispatch
// thunk: cmp on the TLS marker, je -> new code) and after it completed (the slot points at the
// new code again), against a direct call of the same new function through a pointer.
//
// The benchmark process patches ITSELF with `livegraft apply --model per-thread --on-timeout
// keep`: a helper thread sits inside the old bench_hold() (patched too), so the transition stays
// in progress while the main thread, switched to the target universe, runs the first two
// benchmarks. BM_call_after_transition lets the helper return and runs `livegraft apply` again,
// which continues and completes the transition, before it measures.
//   bench_dispatch_cost --benchmark_repetitions=9 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

extern "C" __attribute__((noinline)) int bench_target(int x) { return x * 10 + 1; }

// Stays here (the old version) until *flag is set: its frame holds the transition open.
extern "C" __attribute__((noinline)) int bench_hold(volatile int* flag) {
  int n = 0;
  while (!*flag) {
    ::usleep(1000);
    ++n;
  }
  return n;
}

namespace {

using Fn = int (*)(int);
Fn g_new_func = nullptr;
volatile int g_release = 0;
std::atomic<bool> g_holding{false};
std::string g_lg, g_patch;

std::string run(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  pclose(p);
  return out;
}

nlohmann::json apply_json(const std::string& extra) {
  std::string out = run(g_lg + " --json apply --model per-thread " + extra + " " + std::to_string(getpid()) + " " + g_patch);
  return nlohmann::json::parse(out, nullptr, false);
}

void BM_direct_call_to_new_function(benchmark::State& state) {
  Fn f = g_new_func;
  int x = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(f);
    x += f(x & 1023);
    benchmark::DoNotOptimize(x);
  }
}

void BM_call_during_transition(benchmark::State& state) {
  int x = 0;
  for (auto _ : state) {
    x += bench_target(x & 1023);
    benchmark::DoNotOptimize(x);
  }
}

void BM_call_after_transition(benchmark::State& state) {
  static bool completed = false;
  if (!completed) {
    g_release = 1;
    while (g_holding) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    auto j = apply_json("");
    if (j.is_discarded() || !j.value("ok", false)) {
      state.SkipWithError("could not complete the transition");
      return;
    }
    completed = true;
  }
  int x = 0;
  for (auto _ : state) {
    x += bench_target(x & 1023);
    benchmark::DoNotOptimize(x);
  }
}

}  // namespace

BENCHMARK(BM_direct_call_to_new_function);
BENCHMARK(BM_call_during_transition);
BENCHMARK(BM_call_after_transition);

int main(int argc, char** argv) {
  g_lg = std::string(LG_BINARY_DIR) + "/livegraft";
  g_patch = std::string(LG_BINARY_DIR) + "/patches/bench_dispatch.o";
  std::thread holder([] {
    g_holding = true;
    bench_hold(&g_release);
    g_holding = false;
  });
  while (!g_holding) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  // Times out on the helper, keeping the transition in progress (exit status 1 is expected).
  auto j = apply_json("--timeout 1 --on-timeout keep");
  auto status = nlohmann::json::parse(run(g_lg + " --json status " + std::to_string(getpid())), nullptr, false);
  if (status.is_discarded() || !status.contains("transition") || !status["transition"].is_object()) {
    std::fprintf(stderr, "no transition in progress after the apply: %s\n", j.dump().c_str());
    g_release = 1;
    holder.join();
    return 1;
  }
  for (const auto& p : status.value("patches", nlohmann::json::array()))
    for (const auto& f : p.value("funcs", nlohmann::json::array()))
      if (f.value("old_name", "") == "bench_target") g_new_func = reinterpret_cast<Fn>(f.value("new_addr", uint64_t{0}));
  if (!g_new_func || bench_target(5) != 52 || g_new_func(5) != 52) {
    std::fprintf(stderr, "the main thread does not run the new version: %s\n", status.dump().c_str());
    g_release = 1;
    holder.join();
    return 1;
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  g_release = 1;
  holder.join();
  return 0;
}
