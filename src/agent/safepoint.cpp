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

// ---- Suspended contexts (include/livegraft/safepoint.h, "Coroutines") ----

#include <errno.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

namespace lg::agent {
namespace {
ContextSlot g_slots[kContextSlots];
}  // namespace
}  // namespace lg::agent

// Exported (agent.map): the controller finds it by name in the agent's symbol table.
extern "C" {
__attribute__((visibility("default"))) lg::agent::ContextTable livegraft_context_table = {
    lg::agent::kContextTableMagic,
    lg::agent::kContextTableVersion,
    0,
    lg::agent::kContextSlots,
    {0},
    {0},
    sizeof(lg::agent::ContextSlot),
    reinterpret_cast<uint64_t>(&lg::agent::g_slots[0]),
    0};
}

namespace lg::agent {

namespace {

ContextSlot* claim_slot() {
  auto& t = livegraft_context_table;
  for (uint32_t i = 0; i < kContextSlots; ++i) {
    uint64_t expected = kSlotFree;
    if (g_slots[i].state.load(std::memory_order_relaxed) != kSlotFree) continue;
    if (!g_slots[i].state.compare_exchange_strong(expected, kSlotSaving, std::memory_order_acq_rel)) continue;
    uint64_t hw = t.high_water.load(std::memory_order_relaxed);
    while (hw < i + 1 && !t.high_water.compare_exchange_weak(hw, i + 1, std::memory_order_acq_rel)) {
    }
    return &g_slots[i];
  }
  return nullptr;
}

}  // namespace

namespace {
void never_run() {}

// makecontext(3) on x86-64 stores the trampoline's address where the new context's rsp points
// (glibc sysdeps/unix/sysv/linux/x86_64/makecontext.c): read it from a context never resumed.
uint64_t find_start_context() {
  static uint64_t stack[64];
  ucontext_t uc{};
  if (::getcontext(&uc) != 0) return 0;
  uc.uc_stack.ss_sp = stack;
  uc.uc_stack.ss_size = sizeof stack;
  uc.uc_link = nullptr;
  ::makecontext(&uc, never_run, 0);
  auto sp = static_cast<uint64_t>(uc.uc_mcontext.gregs[REG_RSP]);
  auto lo = reinterpret_cast<uint64_t>(stack);
  if (sp < lo || sp + 8 > lo + sizeof stack) return 0;
  return *reinterpret_cast<const uint64_t*>(sp);
}
}  // namespace

void init_context_table() {
  if (!livegraft_context_table.start_context) livegraft_context_table.start_context = find_start_context();
}

int coroutines_declare() {
  init_context_table();
  __atomic_store_n(&livegraft_context_table.declared, 1u, __ATOMIC_RELEASE);
  return 0;
}

// getcontext returns twice: now, and when someone resumes [from] with setcontext/swapcontext.
// Between the two the frames of this call and its callers lie on [from]'s stack, recorded in a
// slot. The locals live in this frame, which getcontext's saved rsp keeps intact.
__attribute__((noinline)) int swap_context(void* from_p, const void* to_p) {
  auto* from = static_cast<ucontext_t*>(from_p);
  const auto* to = static_cast<const ucontext_t*>(to_p);
  ContextSlot* volatile slot = claim_slot();
  if (!slot) livegraft_context_table.overflow.fetch_add(1, std::memory_order_acq_rel);
  volatile bool resumed = false;
  auto release = [&] {
    if (slot) slot->state.store(kSlotFree, std::memory_order_release);
    else livegraft_context_table.overflow.fetch_sub(1, std::memory_order_acq_rel);
  };
  if (::getcontext(from) != 0) {
    int e = errno;
    release();
    errno = e;
    return -1;
  }
  if (resumed) {
    release();
    return 0;
  }
  resumed = true;
  if (ContextSlot* s = slot) {
    const greg_t* g = from->uc_mcontext.gregs;
    s->key = reinterpret_cast<uint64_t>(from);
    s->tid = static_cast<uint64_t>(::syscall(SYS_gettid));
    s->rip = static_cast<uint64_t>(g[REG_RIP]);
    s->rsp = static_cast<uint64_t>(g[REG_RSP]);
    s->rbp = static_cast<uint64_t>(g[REG_RBP]);
    s->rbx = static_cast<uint64_t>(g[REG_RBX]);
    s->r12 = static_cast<uint64_t>(g[REG_R12]);
    s->r13 = static_cast<uint64_t>(g[REG_R13]);
    s->r14 = static_cast<uint64_t>(g[REG_R14]);
    s->r15 = static_cast<uint64_t>(g[REG_R15]);
    s->state.store(kSlotSuspended, std::memory_order_release);
  }
  ::setcontext(to);
  // setcontext returns only on failure: [from] is not suspended after all.
  int e = errno;
  release();
  errno = e;
  return -1;
}

}  // namespace lg::agent
