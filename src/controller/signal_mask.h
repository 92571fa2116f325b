// Threads that block SIGTRAP (docs/consistency.md, "Threads that block SIGTRAP").
//
// The per-thread and immediate models have the agent write each entry jump with the text_poke
// protocol: an int3 on the first byte while the threads run, which a thread calling the
// function meanwhile executes and the agent's SIGTRAP handler redirects. A thread that executes
// it with SIGTRAP blocked never reaches the handler: the kernel (force_sig_info) resets SIGTRAP
// to its default action for the whole process and unblocks it, and the process dumps core.
// Servers that block every signal in their worker threads do that (HAProxy 2.6:
// src/thread.c setup_extra_threads()). Stop-the-world writes with every thread stopped and no
// int3, so it is not affected.
#pragma once

#include <sys/types.h>

#include "common/result.h"
#include "controller/operations.h"

namespace lg {

// For `op` ("apply", "revert") with the per-thread or immediate model: refused (unsafe) when a
// thread of [pid] other than the agent's own (named livegraft-*) blocks SIGTRAP now, with the
// threads named and a hint for --model stop-the-world. A thread counts when the program blocks
// SIGTRAP (not glibc's own momentary block-all around thread start and exit, recognized by
// signals 32 and 33 blocked too) in each of 5 reads of /proc/PID/task/TID/status 2 ms apart.
// Best effort: a thread may block it later (or be born with it blocked) during the transition.
Result<void> check_sigtrap_not_blocked(pid_t pid, const OperationOptions& options, const char* op);

}  // namespace lg
