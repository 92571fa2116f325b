// Shared option parsing for commands that take a process id.
#pragma once

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <string>

#include "cli/commands.h"

namespace lg::cli {

inline void add_pid_option(CLI::App* cmd, int& pid) {
  cmd->add_option("pid", pid, "Id of the target process")->required()->check(CLI::PositiveNumber);
}

constexpr double kMaxTimeoutSeconds = 86400;

// --timeout: a finite number of seconds in (0, 86400]. CLI11's Range lets "nan" through (every
// comparison with NaN is false), which then became -9223372036854775808 ms.
inline std::string check_timeout(const std::string& text, const char* option = "--timeout") {
  const char* s = text.c_str();
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(s, &end);
  if (end == s || *end != '\0' || errno == ERANGE || !std::isfinite(v) || v <= 0 || v > kMaxTimeoutSeconds)
    return std::string(option) + " must be a number of seconds greater than 0 and at most 86400, not '" + text + "'";
  return {};
}

constexpr const char* kSwitchTimeoutHelp = "Seconds to keep retrying while threads are in affected functions";

inline void add_timeout_option(CLI::App* cmd, double& seconds, const char* what) {
  cmd->add_option("--timeout", seconds, what)
      ->default_val(10.0)
      ->check(CLI::Validator([](std::string& s) { return check_timeout(s); }, "SECONDS", "timeout"));
}

// --agent-timeout: the bound of each wait on the agent (connecting, each request, its socket
// after an injection, the dlopen that loads it), apart from --timeout, which bounds only the
// switch (or, for inject, the search for a thread that may run dlopen): a short --timeout to
// give up quickly on blocked threads must not cut short the agent's load of a patch.
constexpr double kDefaultAgentTimeoutSeconds = 10;

inline void add_agent_timeout_option(CLI::App* cmd, double& seconds) {
  cmd->add_option("--agent-timeout", seconds,
                  "Seconds to wait for the agent at each step: connecting, each answer, and an injection's dlopen")
      ->default_val(kDefaultAgentTimeoutSeconds)
      ->check(CLI::Validator([](std::string& s) { return check_timeout(s, "--agent-timeout"); }, "SECONDS", "timeout"));
}

// Rounds up, so that a tiny positive timeout is 1 ms rather than none.
inline std::chrono::milliseconds to_ms(double seconds) {
  return std::chrono::milliseconds(static_cast<long>(std::ceil(seconds * 1000)));
}

}  // namespace lg::cli
