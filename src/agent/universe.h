// The per-thread universe marker (DESIGN.md §5, docs/consistency.md): one initial-exec TLS word
// per thread, read by the dispatch thunks as %fs:marker_tp_offset(). During transition N a
// thread whose marker is N is in the transition's target universe; any other value means the
// initial universe. The controller writes a stopped thread's marker at fs_base + offset.
//
// Threads created by the program get the marker's value from the agent's TLS initialization
// image (glibc copies it into every new thread, reused stacks included). The agent sets that
// value to N once a transition's dispatch is live, so threads born from then on start in the
// target universe (their call chains begin fresh); threads born before carry the "no transition"
// value and are checked and switched like every other thread.
#pragma once

#include <cstdint>

#include "common/result.h"

namespace lg::agent {

inline constexpr uint64_t kNoTransition = 0x7fffffffffffffffull;  // never a transition id

// %fs-relative offset of the marker (negative: x86-64 TLS variant II).
int32_t marker_tp_offset();
// The calling thread's marker.
uint64_t own_marker();
void set_own_marker(uint64_t v);
// The marker value threads created from now on start with.
Result<void> set_newborn_marker(uint64_t v);
uint64_t newborn_marker();

}  // namespace lg::agent
