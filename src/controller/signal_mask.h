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

#include <chrono>
#include <string>
#include <vector>

#include "common/result.h"

namespace lg {

class Process;

struct BlockingThread {
  pid_t tid = 0;
  std::string name;
};

// The threads of [pid] other than the agent's own (named livegraft-*) that block SIGTRAP now,
// sorted by tid. A thread counts when the program blocks SIGTRAP (not glibc's own momentary
// block-all around thread start and exit, recognized by signals 32 and 33 blocked too) in each
// of 5 reads of /proc/PID/task/TID/status 2 ms apart (no wait when no thread blocks it).
std::vector<BlockingThread> threads_blocking_sigtrap(pid_t pid);
// "123 (name), 124 (name) and 3 more".
std::string describe_threads(const std::vector<BlockingThread>& threads);

// The per-thread and immediate models' way through: while their int3s are in place, the threads that block
// SIGTRAP have it unblocked (each stopped alone for it, PTRACE_SETSIGMASK), so a thread that
// meets one reaches the agent's handler. restore() blocks it again, in each thread whose mask
// is still the one set here (a thread that set its own since keeps it), once no int3 is left,
// after taking a breakpoint trap still queued for it (take_pending_trap); a transition left
// with its int3s (--on-timeout keep, a controller killed) leaves SIGTRAP unblocked, the safe
// side. Not covered: a thread that blocks SIGTRAP again itself, or is born with it blocked,
// while the int3s are in place (docs/consistency.md).
class SigtrapUnblock {
 public:
  explicit SigtrapUnblock(Process& process) : process_(process) {}
  SigtrapUnblock(const SigtrapUnblock&) = delete;
  SigtrapUnblock& operator=(const SigtrapUnblock&) = delete;
  // Unblocks SIGTRAP in [threads], one stopped at a time; on error every change is undone.
  // Refused (unsafe) when such a thread already has a breakpoint trap queued behind its mask.
  Result<void> begin(const std::vector<BlockingThread>& threads, std::chrono::milliseconds timeout);
  void restore();
  // The threads whose mask was changed and not yet restored.
  std::vector<pid_t> threads() const;

 private:
  struct Changed {
    pid_t tid;
    uint64_t original, set;
  };
  // Takes a breakpoint trap queued for the stopped thread [tid] (its SIGTRAP unblocked) before
  // SIGTRAP is blocked again; false if one may be left.
  bool take_pending_trap(pid_t tid);
  Process& process_;
  std::vector<Changed> changed_;
};

}  // namespace lg
