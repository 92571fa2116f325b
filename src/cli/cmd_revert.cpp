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
    TransitionArgs transition;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("revert", "Take an applied patch back out of a running process");
  add_pid_option(cmd, args->pid);
  cmd->add_option("name", args->name, "Name of the applied patch (see `livegraft status PID`)")->required();
  add_transition_options(cmd, args->transition);
  cmd->callback([args, &global, &exit_code] {
    std::vector<Blocker> blockers;
    auto result = revert_patch(args->pid, args->name, transition_options(args->transition, global, blockers));
    if (!result) {
      exit_code = report_transition_error(global, result.error(), blockers);
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
