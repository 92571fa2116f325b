// livegraft revert PID NAME
#include <iostream>

#include "cli/blockers.h"
#include "cli/output.h"
#include "cli/pid_option.h"
#include "controller/operations.h"

namespace lg::cli {

void add_revert_command(CLI::App& app, GlobalOptions& global, int& exit_code) {
  struct Args {
    int pid = 0;
    std::string name;
    double timeout = 10;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("revert", "Take an applied patch back out of a running process");
  add_pid_option(cmd, args->pid);
  cmd->add_option("name", args->name, "Name of the applied patch (see `livegraft status PID`)")->required();
  add_timeout_option(cmd, args->timeout, kSwitchTimeoutHelp);
  cmd->callback([args, &global, &exit_code] {
    std::vector<Blocker> blockers;
    OperationOptions options;
    options.timeout = to_ms(args->timeout);
    options.progress = progress_printer(global);
    options.blockers = &blockers;
    auto result = revert_patch(args->pid, args->name, options);
    if (!result) {
      exit_code = report_error(global, result.error(), {{"blockers", blockers_json(blockers)}});
      if (!global.json) print_blockers(blockers);
      return;
    }
    if (global.json) return print_json_ok(*result);
    const auto& t = (*result)["transition"];
    std::cout << fmt::format("reverted patch '{}' in process {}\n  {} thread(s) stopped for {} us, {} attempt(s)\n",
                             args->name, args->pid, t["threads"].get<size_t>(), t["stopped_us"].get<long>(),
                             t["attempts"].get<int>());
  });
}

}  // namespace lg::cli
