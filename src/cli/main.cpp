// livegraft: live patching for running processes. Each sub-command lives in cmd_<name>.cpp.
#include <cstring>
#include <iostream>

#include "cli/commands.h"
#include "cli/output.h"

namespace {

// --json anywhere on the command line (before "--"): a usage error found before CLI11 reached
// the flag must still be one JSON document.
bool json_requested(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--") == 0) break;
    if (std::strcmp(argv[i], "--json") == 0) return true;
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  lg::cli::GlobalOptions global;
  // No exception may leave main: an uncaught one is SIGABRT and no output (exit 134). Anything
  // unexpected is reported as an internal error, exit code 1 (docs/cli.md).
  try {
    CLI::App app{"livegraft: apply and revert live patches in running processes"};
    app.require_subcommand(1);
    app.set_version_flag("--version", "livegraft 0.1.0");
    int exit_code = lg::cli::kExitOk;
    app.add_flag("--json", global.json, "Print one JSON document on stdout (errors too)")->configurable();
    app.add_flag("-v,--verbose", global.verbose, "Print progress on stderr");
    app.footer("Exit codes: 0 ok, 1 failure, 2 usage, 3 not found, 4 permission, 5 refused (unsafe/busy/timeout),\n"
               "6 bad or mismatched patch, 7 agent error. See docs/cli.md.");
    lg::cli::add_apply_command(app, global, exit_code);
    lg::cli::add_revert_command(app, global, exit_code);
    lg::cli::add_status_command(app, global, exit_code);
    lg::cli::add_inject_command(app, global, exit_code);
    lg::cli::add_force_command(app, global, exit_code);
#ifdef LG_HAVE_BUILDER
    lg::cli::add_diff_command(app, global, exit_code);
    lg::cli::add_build_command(app, global, exit_code);
#endif
    try {
      app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
      if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) return app.exit(e);  // --help, --version
      if (global.json || json_requested(argc, argv)) {
        global.json = true;
        return lg::cli::report_error(global, lg::Error(lg::ErrorKind::invalid_argument, e.what(), 0,
                                                       "see `livegraft --help` and `livegraft COMMAND --help`"));
      }
      app.exit(e);
      return lg::cli::kExitUsage;
    }
    return exit_code;
  } catch (const std::exception& e) {
    if (json_requested(argc, argv)) global.json = true;
    return lg::cli::report_error(global, lg::Error(lg::ErrorKind::internal, std::string("internal error: ") + e.what(),
                                                   0, "this is a bug in livegraft; please report it with the command line"));
  } catch (...) {
    if (json_requested(argc, argv)) global.json = true;
    return lg::cli::report_error(global, lg::Error(lg::ErrorKind::internal, "internal error: unknown exception", 0,
                                                   "this is a bug in livegraft; please report it with the command line"));
  }
}
