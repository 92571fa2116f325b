// livegraft force PID: finish the per-thread transition in progress by switching every pending
// thread whatever its stack holds (the kernel's /sys/kernel/livepatch/<patch>/force).
#include <iostream>

#include "cli/blockers.h"
#include "cli/model_option.h"
#include "cli/output.h"
#include "cli/pid_option.h"
#include "controller/operations.h"

namespace lg::cli {

void add_force_command(CLI::App& app, GlobalOptions& global, int& exit_code) {
  auto pid = std::make_shared<int>(0);
  auto agent_timeout = std::make_shared<double>(kDefaultAgentTimeoutSeconds);
  auto* cmd = app.add_subcommand("force", "Switch the pending threads of the transition in progress without checking their stacks");
  add_pid_option(cmd, *pid);
  add_agent_timeout_option(cmd, *agent_timeout);
  cmd->footer(
      "WARNING (as the kernel's livepatch documentation says of its force): a thread switched while an affected\n"
      "function is on its stack may run a mix of old and new code when it returns into it. Use it only when you\n"
      "know those stacks are safe (look at `livegraft status PID` first); code that a forced transition would\n"
      "unload stays mapped for the life of the process.");
  cmd->callback([pid, agent_timeout, &global, &exit_code] {
    OperationOptions options;
    options.agent_timeout = to_ms(*agent_timeout);
    options.progress = progress_printer(global);
    std::cerr << "livegraft: warning: forcing the transition: pending threads switch without a stack check; a thread "
                 "that returns into an affected function may mix versions\n";
    auto result = force_transition(*pid, options);
    if (!result) {
      exit_code = report_error(global, result.error());
      return;
    }
    const auto& r = *result;
    if (global.json) return print_json_ok(r);
    std::cout << fmt::format("forced the {} of patch '{}' in process {}: {} thread(s) switched without a stack check\n",
                             r.value("kind", "?"), r.value("patch", "?"), *pid, r.value("forced", 0));
  });
}

}  // namespace lg::cli
