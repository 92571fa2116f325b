// The sub-commands of the livegraft CLI. main.cpp builds the CLI11 app and calls add_*_command
// for each; a sub-command's callback stores its exit code (docs/cli.md) in *exit_code.
#pragma once

#include <CLI/CLI.hpp>

namespace lg::cli {

struct GlobalOptions {
  bool json = false;    // machine-readable output on stdout (one JSON document)
  int verbose = 0;      // -v: progress and diagnostics on stderr
};

// Exit codes, documented in docs/cli.md.
enum ExitCode : int {
  kExitOk = 0,
  kExitFailure = 1,      // anything else (I/O, internal)
  kExitUsage = 2,        // bad command line (CLI11's own)
  kExitNotFound = 3,     // no such process, patch, file, symbol
  kExitPermission = 4,   // may not control that process / read that file
  kExitRefused = 5,      // refused for safety: busy stack until --timeout, traced by another, busy
  kExitBadPatch = 6,     // malformed or unsupported patch object, build-id/code mismatch
  kExitAgent = 7,        // the agent failed or is disabled
};

void add_apply_command(CLI::App& app, GlobalOptions& global, int& exit_code);
void add_revert_command(CLI::App& app, GlobalOptions& global, int& exit_code);
void add_status_command(CLI::App& app, GlobalOptions& global, int& exit_code);
void add_inject_command(CLI::App& app, GlobalOptions& global, int& exit_code);
void add_force_command(CLI::App& app, GlobalOptions& global, int& exit_code);
// Builder (src/builder): livegraft diff / livegraft build.
void add_diff_command(CLI::App& app, GlobalOptions& global, int& exit_code);
void add_build_command(CLI::App& app, GlobalOptions& global, int& exit_code);

}  // namespace lg::cli
