#include "agent/safepoint.h"

#include <time.h>

#include <atomic>

#include "agent/universe.h"

namespace lg::agent {

namespace {

std::atomic<uint64_t> g_id{0};
std::atomic<bool> g_reversed{false};
__thread int64_t t_last_park_ms __attribute__((tls_model("initial-exec"))) = -1000000;

constexpr int64_t kParkMs = 150;      // longer than the controller's longest retry interval (50 ms)
constexpr int64_t kParkEveryMs = 2000;

int64_t now_ms() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

bool on_goal_side(uint64_t id) { return (own_marker() == id) != g_reversed.load(std::memory_order_acquire); }

}  // namespace

void set_safepoint_transition(uint64_t id, bool reversed) {
  g_reversed.store(reversed, std::memory_order_release);
  g_id.store(id, std::memory_order_release);
}

void safepoint() {
  uint64_t id = g_id.load(std::memory_order_acquire);
  if (id == 0 || on_goal_side(id)) return;
  int64_t start = now_ms();
  if (start - t_last_park_ms < kParkEveryMs) return;  // no controller came last time: do not stall the loop
  t_last_park_ms = start;
  // Parked: the controller sees this thread in livegraft_safepoint (in nanosleep), unwinds it,
  // and writes its marker if its callers are clean.
  while (g_id.load(std::memory_order_acquire) == id && !on_goal_side(id) && now_ms() - start < kParkMs) {
    timespec ts{0, 1000000};
    ::nanosleep(&ts, nullptr);
  }
}

}  // namespace lg::agent
