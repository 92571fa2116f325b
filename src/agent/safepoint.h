// livegraft_safepoint() (include/livegraft/safepoint.h): a thread offers to be switched.
//
// The choice (docs/consistency.md, "Safepoints"): the agent does not judge its own stack. It
// cannot use the controller's libdw unwinder, a frame-pointer walk is not reliable without
// frame pointers, and the static libgcc unwinder in the agent reports a frame without CFI (patch
// code registered with the host's libgcc_s, JIT code) as the end of the stack, which would
// pass an unexplained frame as clean. Instead a thread that is not switched waits in the
// safepoint for a moment; the controller, visiting pending threads every few milliseconds,
// stops it there and checks its stack as it checks every other — reliably, with the same rules.
//
// Suspended contexts (livegraft_coroutines_declare, livegraft_swapcontext): the same choice.
// The agent only records each suspended context's saved registers in a table in its memory,
// the exported object `livegraft_context_table`; the controller reads the table through
// /proc/PID/mem (also while every thread is stopped) and unwinds each context itself. The
// layout below is shared with the controller (src/controller/stack_switching.cpp).
#pragma once

#include <atomic>
#include <cstdint>

namespace lg::agent {

// The transition the safepoint serves: id 0 = none. Set by the registry.
void set_safepoint_transition(uint64_t id, bool reversed);
void safepoint();

inline constexpr uint32_t kContextTableMagic = 0x5443474c;  // "LGCT"
inline constexpr uint32_t kContextTableVersion = 1;
inline constexpr uint32_t kContextSlots = 4096;

// A slot's state: free; claimed by a thread in livegraft_swapcontext that has not saved its
// registers yet (that thread's own stack still holds the frames: nothing to read); suspended
// (the registers are those getcontext saved; valid until the state changes).
enum ContextSlotState : uint64_t { kSlotFree = 0, kSlotSaving = 2, kSlotSuspended = 1 };

struct ContextSlot {
  std::atomic<uint64_t> state;
  uint64_t key;  // the ucontext_t*
  uint64_t tid;  // the thread that suspended it
  uint64_t rip, rsp, rbp, rbx, r12, r13, r14, r15;
};
static_assert(sizeof(ContextSlot) == 88);

struct ContextTable {
  uint32_t magic;
  uint32_t version;
  uint32_t declared;  // livegraft_coroutines_declare() was called
  uint32_t capacity;
  std::atomic<uint64_t> overflow;    // suspended contexts that found no free slot (unsafe while > 0)
  std::atomic<uint64_t> high_water;  // slots [0, high_water) have ever been used
  uint64_t slot_size;
  uint64_t slots;  // address of ContextSlot[capacity] (in .bss: the table costs no file size)
  // The return address makecontext(3) puts under a coroutine's entry function (glibc's
  // __start_context, which has no CFI): where a coroutine's stack ends. 0: unknown.
  uint64_t start_context;
};
static_assert(sizeof(ContextTable) == 56);

// Finds makecontext's trampoline (ContextTable::start_context). Called once at start-up.
void init_context_table();
int coroutines_declare();
int swap_context(void* from, const void* to);

}  // namespace lg::agent
