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
    TransitionArgs transition;
    std::string agent;
    std::string symbols;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("apply", "Apply a patch object to a running process (per-thread consistency by default)");
  add_pid_option(cmd, args->pid);
  cmd->add_option("patch", args->patch, "Patch object (.o) made by `livegraft build` or by hand")->required();
  add_transition_options(cmd, args->transition);
  cmd->add_option("--agent", args->agent, "liblivegraft-agent.so to inject when the process has none");
  cmd->add_option("--symbols", args->symbols,
                  "Separate debug file of a stripped target object (found by build-id, .gnu_debuglink or "
                  "debuginfod otherwise)");
  cmd->callback([args, &global, &exit_code] {
    std::vector<Blocker> blockers;
    OperationOptions options = transition_options(args->transition, global, blockers);
    options.agent_path = args->agent;
    options.symbols_file = args->symbols;
    auto result = apply_patch(args->pid, args->patch, options);
    if (!result) {
      exit_code = report_transition_error(global, result.error(), blockers);
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
