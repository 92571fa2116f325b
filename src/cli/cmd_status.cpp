// livegraft status PID
#include <iostream>

#include "cli/output.h"
#include "cli/pid_option.h"
#include "controller/operations.h"

namespace lg::cli {

void add_status_command(CLI::App& app, GlobalOptions& global, int& exit_code) {
  auto pid = std::make_shared<int>(0);
  auto timeout = std::make_shared<double>(10);
  auto agent_timeout = std::make_shared<double>(kDefaultAgentTimeoutSeconds);
  auto* cmd = app.add_subcommand("status", "Show the patches applied to a running process");
  add_pid_option(cmd, *pid);
  // status runs no switch: --timeout is accepted (and checked) like apply's, so that one set of
  // options serves every command, and bounds nothing (docs/cli.md).
  add_timeout_option(cmd, *timeout, "Accepted for symmetry with apply/revert; status runs no switch (see --agent-timeout)");
  add_agent_timeout_option(cmd, *agent_timeout);
  cmd->callback([pid, agent_timeout, &global, &exit_code] {
    auto result = patch_status(*pid, to_ms(*agent_timeout));
    if (!result) {
      exit_code = report_error(global, result.error());
      return;
    }
    const auto& s = *result;
    if (global.json) return print_json_ok(s);
    if (!s.value("agent", false)) {
      std::cout << fmt::format("process {}: no livegraft agent, no patches\n", *pid);
      return;
    }
    std::cout << fmt::format("process {}: agent running", *pid);
    if (s.contains("disabled") && s["disabled"].is_string())
      std::cout << fmt::format(", DISABLED: {}", s["disabled"].get<std::string>());
    std::cout << "\n";
    if (s.contains("transition") && s["transition"].is_object()) {
      const auto& t = s["transition"];
      bool reversed = t.value("reversed", false);
      std::cout << fmt::format("  transition in progress: {} of '{}' ({}{}{}), {} ms\n", t.value("kind", "?"), t.value("patch", "?"),
                               t.value("model", "?"), reversed ? ", reversed: threads are going back" : "",
                               t.value("forced", false) ? ", forced" : "", t.value("elapsed_ms", 0L));
      if (t.contains("threads")) {
        const auto& th = t["threads"];
        std::cout << fmt::format("    threads: {} switched, {} pending\n", th.value("switched", 0), th["pending"].size());
        for (const auto& p : th["pending"]) {
          std::cout << fmt::format("    thread {}: {}\n", p.value("tid", 0), p.value("reason", "?"));
          for (const auto& f : p.value("stack", nlohmann::json::array())) std::cout << "        " << f.get<std::string>() << "\n";
        }
      }
      if (t.contains("survey_error")) std::cout << "    (threads not inspected: " << t["survey_error"].get<std::string>() << ")\n";
    }
    const auto& patches = s.contains("patches") && s["patches"].is_array() ? s["patches"] : nlohmann::json::array();
    if (patches.empty()) std::cout << "  no patches\n";
    for (const auto& p : patches) {
      std::cout << fmt::format("  patch '{}' [{}, {}] from {}", p.value("name", "?"), p.value("state", "?"),
                               p.value("model", "?"), p.value("path", "?"));
      if (p.contains("object_path") && p["object_path"].is_string())
        std::cout << fmt::format(", patching {}", p["object_path"].get<std::string>());
      std::cout << "\n";
      for (const auto& f : p.value("funcs", nlohmann::json::array()))
        std::cout << fmt::format("    {:<32} {:#x} -> {:#x}\n", f.value("old_name", "?"),
                                 f.value("old_addr", uint64_t{0}), f.value("new_addr", uint64_t{0}));
    }
    // The agent's dispatch code (docs/consistency.md, "Memory").
    if (s.contains("arena") && s["arena"].is_object()) {
      const auto& a = s["arena"];
      std::cout << fmt::format("  code arena: {} bytes in use, {} retired, {} free ({} KiB mapped)\n", a.value("in_use", uint64_t{0}),
                               a.value("retired", uint64_t{0}), a.value("free", uint64_t{0}), a.value("mapped", uint64_t{0}) / 1024);
    }
  });
}

}  // namespace lg::cli
