// livegraft: live patching for running processes. Each sub-command lives in cmd_<name>.cpp.
#include <iostream>

#include "cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"livegraft: apply and revert live patches in running processes"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "livegraft 0.1.0");
  lg::cli::GlobalOptions global;
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
    int rc = app.exit(e);
    return rc == 0 ? 0 : lg::cli::kExitUsage;
  }
  return exit_code;
}
