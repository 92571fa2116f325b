// livegraft_safepoint() (include/livegraft/safepoint.h): a thread offers to be switched.
//
// The choice (docs/consistency.md, "Safepoints"): the agent does not judge its own stack. It
// cannot use the controller's libdw unwinder, a frame-pointer walk is not reliable without
// frame pointers, and the static libgcc unwinder in the agent reports a frame without CFI (patch
// code registered with the host's libgcc_s, JIT code) as the end of the stack, which would
// pass an unexplained frame as clean. Instead a thread that is not switched waits in the
// safepoint for a moment; the controller, visiting pending threads every few milliseconds,
// stops it there and checks its stack as it checks every other — reliably, with the same rules.
#pragma once

#include <cstdint>

namespace lg::agent {

// The transition the safepoint serves: id 0 = none. Set by the registry.
void set_safepoint_transition(uint64_t id, bool reversed);
void safepoint();

}  // namespace lg::agent
