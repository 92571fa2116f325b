// livegraft apply PID PATCH.o
#include <iostream>

#include "cli/blockers.h"
#include "cli/model_option.h"
#include "cli/output.h"
#include "cli/pid_option.h"
#include "controller/operations.h"

namespace lg::cli {

void add_apply_command(CLI::App& app, GlobalOptions& global, int& exit_code) {
  struct Args {
    int pid = 0;
    std::string patch;
    double timeout = 10;
    std::string model, on_timeout;
    std::string agent;
    std::string symbols;
    bool allow_stack_switching = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("apply", "Apply a patch object to a running process (per-thread consistency by default)");
  add_pid_option(cmd, args->pid);
  cmd->add_option("patch", args->patch, "Patch object (.o) made by `livegraft build` or by hand")->required();
  add_timeout_option(cmd, args->timeout, kSwitchTimeoutHelp);
  add_model_option(cmd, args->model);
  add_on_timeout_option(cmd, args->on_timeout);
  add_stack_switching_option(cmd, args->allow_stack_switching);
  cmd->add_option("--agent", args->agent, "liblivegraft-agent.so to inject when the process has none");
  cmd->add_option("--symbols", args->symbols,
                  "Separate debug file of a stripped target object (found by build-id, .gnu_debuglink or "
                  "debuginfod otherwise)");
  cmd->callback([args, &global, &exit_code] {
    std::vector<Blocker> blockers;
    OperationOptions options;
    options.timeout = to_ms(args->timeout);
    options.model = to_model(args->model);
    options.on_timeout = to_on_timeout(args->on_timeout);
    options.allow_stack_switching = args->allow_stack_switching;
    options.agent_path = args->agent;
    options.symbols_file = args->symbols;
    options.progress = progress_printer(global);
    options.blockers = &blockers;
    auto result = apply_patch(args->pid, args->patch, options);
    if (!result) {
      exit_code = report_error(global, result.error(), {{"blockers", blockers_json(blockers)}});
      if (!global.json) print_blockers(blockers);
      return;
    }
    const auto& r = *result;
    if (global.json) return print_json_ok(r);
    if (r.contains("continued")) {
      std::cout << fmt::format("{}\n  {}\n", continued_summary(r, r["patch"].get<std::string>(), args->pid),
                               transition_summary(r["transition"], args->pid));
      return;
    }
    std::cout << fmt::format("applied patch '{}' to process {} ({})\n", r["patch"].get<std::string>(), args->pid,
                             r["object"].get<std::string>());
    for (const auto& f : r["functions"])
      std::cout << fmt::format("  {:<32} {:#x} -> {:#x}\n", f.value("old_name", "?"), f.value("old_addr", uint64_t{0}),
                               f.value("new_addr", uint64_t{0}));
    const auto& t = r["transition"];
    std::cout << fmt::format("  {}{}\n", r["agent_injected"].get<bool>() ? "agent injected; " : "", transition_summary(t, args->pid));
  });
}

}  // namespace lg::cli
