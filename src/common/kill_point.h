// Kill points: deterministic places where a test may have the controller SIGKILL itself, so that
// "the controller died at step N of apply" is a test case rather than a lucky sleep.
//
//   LIVEGRAFT_KILL_TRACE=1   every kill point reached prints "livegraft: kill point N NAME" on
//                            stderr (a test runs once with it to enumerate the steps)
//   LIVEGRAFT_KILL_AT=N      the N-th kill point reached (1-based) raises SIGKILL
//   LIVEGRAFT_KILL_AT=NAME   the first kill point called NAME raises SIGKILL
//   LIVEGRAFT_PAUSE_AT=NAME  the first kill point called NAME prints "livegraft: paused at kill
//                            point NAME" and stops the controller (SIGSTOP) until a SIGCONT:
//                            the test does something to the target there (kills it, makes it
//                            execve), then lets the controller go on
//
// Names are "<operation>.<step>", e.g. "inject.after_mmap", "apply.after_load". Without either
// variable a kill point costs one getenv per process (cached) and does nothing.
#pragma once

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace lg {

namespace detail {
struct KillPointConfig {
  bool trace = false;
  long at_number = 0;
  const char* at_name = nullptr;
  const char* pause_at = nullptr;
  long reached = 0;
};
inline KillPointConfig& kill_point_config() {
  static KillPointConfig config = [] {
    KillPointConfig c;
    const char* trace = std::getenv("LIVEGRAFT_KILL_TRACE");
    c.trace = trace && *trace && std::strcmp(trace, "0") != 0;
    if (const char* at = std::getenv("LIVEGRAFT_KILL_AT"); at && *at) {
      char* end = nullptr;
      long n = std::strtol(at, &end, 10);
      if (end && *end == '\0' && n > 0) c.at_number = n;
      else c.at_name = at;
    }
    if (const char* at = std::getenv("LIVEGRAFT_PAUSE_AT"); at && *at) c.pause_at = at;
    return c;
  }();
  return config;
}
}  // namespace detail

// Marks a step boundary of a state-changing operation. Call it between two effects on the
// target (after one is complete, before the next begins), never inside one.
inline void kill_point(const char* name) {
  auto& c = detail::kill_point_config();
  if (!c.trace && !c.at_number && !c.at_name && !c.pause_at) return;
  long n = ++c.reached;
  if (c.pause_at && std::strcmp(c.pause_at, name) == 0) {
    c.pause_at = nullptr;  // once
    std::fprintf(stderr, "livegraft: paused at kill point %s\n", name);
    std::fflush(stderr);
    ::raise(SIGSTOP);
  }
  if (c.trace) std::fprintf(stderr, "livegraft: kill point %ld %s\n", n, name);
  if ((c.at_number && n == c.at_number) || (c.at_name && std::strcmp(c.at_name, name) == 0)) {
    std::fflush(stderr);
    ::kill(::getpid(), SIGKILL);
  }
}

}  // namespace lg
