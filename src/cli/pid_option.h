// Shared option parsing for commands that take a process id.
#pragma once

#include <chrono>

#include "cli/commands.h"

namespace lg::cli {

inline void add_pid_option(CLI::App* cmd, int& pid) {
  cmd->add_option("pid", pid, "Id of the target process")->required()->check(CLI::PositiveNumber);
}

inline void add_timeout_option(CLI::App* cmd, double& seconds) {
  cmd->add_option("--timeout", seconds, "Seconds to keep retrying while threads are in affected functions")
      ->default_val(10.0)
      ->check(CLI::Range(0.0, 86400.0));
}

inline std::chrono::milliseconds to_ms(double seconds) {
  return std::chrono::milliseconds(static_cast<long>(seconds * 1000));
}

}  // namespace lg::cli
