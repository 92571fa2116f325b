// livegraft inject PID
#include <iostream>

#include "cli/output.h"
#include "cli/pid_option.h"
#include "controller/operations.h"

namespace lg::cli {

void add_inject_command(CLI::App& app, GlobalOptions& global, int& exit_code) {
  struct Args {
    int pid = 0;
    std::string agent;
    double timeout = 10;
    double agent_timeout = kDefaultAgentTimeoutSeconds;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("inject", "Load the livegraft agent into a running process (apply does this itself)");
  add_pid_option(cmd, args->pid);
  cmd->add_option("--agent", args->agent, "liblivegraft-agent.so to inject");
  add_timeout_option(cmd, args->timeout, "Seconds to look for a thread that may run dlopen");
  add_agent_timeout_option(cmd, args->agent_timeout);
  cmd->callback([args, &global, &exit_code] {
    OperationOptions options;
    options.timeout = to_ms(args->timeout);
    options.agent_timeout = to_ms(args->agent_timeout);
    options.agent_path = args->agent;
    options.progress = progress_printer(global);
    auto result = inject_agent(args->pid, options);
    if (!result) {
      exit_code = report_error(global, result.error());
      return;
    }
    if (global.json) return print_json_ok(*result);
    std::cout << fmt::format("process {}: agent {}\n", args->pid,
                             (*result)["injected"].get<bool>() ? "injected" : "already present");
  });
}

}  // namespace lg::cli
