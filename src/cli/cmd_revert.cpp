// livegraft revert PID NAME
#include <iostream>

#include "cli/blockers.h"
#include "cli/model_option.h"
#include "cli/output.h"
#include "cli/pid_option.h"
#include "controller/operations.h"

namespace lg::cli {

void add_revert_command(CLI::App& app, GlobalOptions& global, int& exit_code) {
  struct Args {
    int pid = 0;
    std::string name;
    double timeout = 10;
    std::string model, on_timeout;
    bool allow_stack_switching = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("revert", "Take an applied patch back out of a running process");
  add_pid_option(cmd, args->pid);
  cmd->add_option("name", args->name, "Name of the applied patch (see `livegraft status PID`)")->required();
  add_timeout_option(cmd, args->timeout, kSwitchTimeoutHelp);
  add_model_option(cmd, args->model);
  add_on_timeout_option(cmd, args->on_timeout);
  add_stack_switching_option(cmd, args->allow_stack_switching);
  cmd->callback([args, &global, &exit_code] {
    std::vector<Blocker> blockers;
    OperationOptions options;
    options.timeout = to_ms(args->timeout);
    options.model = to_model(args->model);
    options.on_timeout = to_on_timeout(args->on_timeout);
    options.allow_stack_switching = args->allow_stack_switching;
    options.progress = progress_printer(global);
    options.blockers = &blockers;
    auto result = revert_patch(args->pid, args->name, options);
    if (!result) {
      exit_code = report_error(global, result.error(), {{"blockers", blockers_json(blockers)}});
      if (!global.json) print_blockers(blockers);
      return;
    }
    if (global.json) return print_json_ok(*result);
    if (result->contains("continued")) {
      std::cout << fmt::format("{}\n  {}\n", continued_summary(*result, args->name, args->pid),
                               transition_summary((*result)["transition"], args->pid));
      return;
    }
    const auto& t = (*result)["transition"];
    std::cout << fmt::format("reverted patch '{}' in process {}\n  {}\n", args->name, args->pid, transition_summary(t, args->pid));
  });
}

}  // namespace lg::cli
