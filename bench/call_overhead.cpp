// The cost of calling a patched function (entry jmp -> stub -> jmp *slot -> new code) against a
// direct call of the same new function. The benchmark process patches ITSELF: before the
// benchmarks run it starts `livegraft apply <own pid> <patch>` and waits for it.
#include <benchmark/benchmark.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include <nlohmann/json.hpp>

extern "C" __attribute__((noinline)) int bench_target(int x) { return x * 10 + 1; }

namespace {

using Fn = int (*)(int);
Fn g_new_func = nullptr;

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

void BM_direct_call_to_new_function(benchmark::State& state) {
  Fn f = g_new_func;
  int x = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(f);
    x += f(x & 1023);
    benchmark::DoNotOptimize(x);
  }
}

void BM_call_through_patched_entry(benchmark::State& state) {
  int x = 0;
  for (auto _ : state) {
    x += bench_target(x & 1023);
    benchmark::DoNotOptimize(x);
  }
}

}  // namespace

BENCHMARK(BM_direct_call_to_new_function);
BENCHMARK(BM_call_through_patched_entry);

int main(int argc, char** argv) {
  std::string lg = std::string(LG_BINARY_DIR) + "/livegraft";
  std::string patch = std::string(LG_BINARY_DIR) + "/patches/bench_plus2.o";
  std::string out = run(lg + " --json apply " + std::to_string(getpid()) + " " + patch);
  auto j = nlohmann::json::parse(out, nullptr, false);
  if (j.is_discarded() || !j.value("ok", false)) {
    std::fprintf(stderr, "could not patch the benchmark process: %s\n", out.c_str());
    return 1;
  }
  g_new_func = reinterpret_cast<Fn>(j["functions"][0]["new_addr"].get<uint64_t>());
  if (bench_target(5) != 52 || g_new_func(5) != 52) {
    std::fprintf(stderr, "patch not in effect\n");
    return 1;
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
