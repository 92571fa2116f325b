// --model for the commands that run a transition (docs/consistency.md, docs/cli.md).
#pragma once

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <fmt/format.h>

#include "cli/blockers.h"
#include "cli/commands.h"
#include "cli/output.h"
#include "cli/pid_option.h"
#include "controller/operations.h"
#include "protocol/protocol.h"

namespace lg::cli {

// The default is per-thread; $LIVEGRAFT_MODEL changes it (the stop-the-world test suites set it).
inline void add_model_option(CLI::App* cmd, std::string& model) {
  const char* env = std::getenv("LIVEGRAFT_MODEL");
  model = env && *env ? env : "per-thread";
  cmd->add_option("--model", model,
                  "Consistency model: per-thread (one thread stopped at a time, each switched when its stack is clean) "
                  "or stop-the-world (all threads stopped and switched together), or immediate (no consistency: "
                  "only for patches built with --immediate-ok)")
      ->check(CLI::IsMember({"per-thread", "stop-the-world", "immediate"}))
      ->capture_default_str();
}

// --allow-stack-switching: the user's word that no suspended coroutine holds affected code.
inline void add_stack_switching_option(CLI::App* cmd, bool& allow) {
  cmd->add_flag("--allow-stack-switching", allow,
                "Patch a process that switches stacks in user space (swapcontext, boost.context, ...) although its "
                "scheduler declares no suspended contexts. WARNING: livegraft cannot see a suspended coroutine's "
                "frames; one suspended inside an affected function resumes into the other version (it is your call "
                "that none is)");
}

inline void add_on_timeout_option(CLI::App* cmd, std::string& on_timeout) {
  on_timeout = "reverse";
  cmd->add_option("--on-timeout", on_timeout,
                  "Per-thread model, when --timeout passes: reverse (threads go back, the process ends as it was) or keep "
                  "(the transition stays in progress for a later apply, revert or force)")
      ->check(CLI::IsMember({"reverse", "keep"}))
      ->capture_default_str();
}

inline OnTimeout to_on_timeout(const std::string& s) { return s == "keep" ? OnTimeout::keep : OnTimeout::reverse; }

inline ConsistencyModel to_model(const std::string& m) {
  if (m == "immediate") return ConsistencyModel::immediate;
  return m == "stop-the-world" ? ConsistencyModel::stop_the_world : ConsistencyModel::per_thread;
}

// The options every command that runs a transition takes (apply, revert), and what they set.
struct TransitionArgs {
  double timeout = 10;
  double agent_timeout = kDefaultAgentTimeoutSeconds;
  std::string model, on_timeout;
  bool allow_stack_switching = false;
};

inline void add_transition_options(CLI::App* cmd, TransitionArgs& t) {
  add_timeout_option(cmd, t.timeout, kSwitchTimeoutHelp);
  add_agent_timeout_option(cmd, t.agent_timeout);
  add_model_option(cmd, t.model);
  add_on_timeout_option(cmd, t.on_timeout);
  add_stack_switching_option(cmd, t.allow_stack_switching);
}

// The options of a transition run for [t]; blockers found on the way go to [blockers].
inline OperationOptions transition_options(const TransitionArgs& t, const GlobalOptions& global, std::vector<Blocker>& blockers) {
  OperationOptions options;
  options.timeout = to_ms(t.timeout);
  options.agent_timeout = to_ms(t.agent_timeout);
  options.model = to_model(t.model);
  options.on_timeout = to_on_timeout(t.on_timeout);
  options.allow_stack_switching = t.allow_stack_switching;
  options.progress = progress_printer(global);
  options.blockers = &blockers;
  return options;
}

// A failed apply/revert: the error, and for people the threads that held the transition.
inline int report_transition_error(const GlobalOptions& global, const Error& e, const std::vector<Blocker>& blockers) {
  int code = report_error(global, e, {{"blockers", blockers_json(blockers)}});
  if (!global.json) print_blockers(blockers);
  return code;
}

// The agent's own threads (livegraft-agent, livegraft-exec) are threads of the process like any
// other and are switched too; a report that counts them says so, or "3 threads" surprises the
// owner of a single-threaded server.
inline int agent_thread_count(int pid) {
  std::error_code ec;
  int n = 0;
  for (const auto& task : std::filesystem::directory_iterator(fmt::format("/proc/{}/task", pid), ec)) {
    std::ifstream comm(task.path() / "comm");
    std::string name;
    if (std::getline(comm, name) && protocol::is_agent_thread_name(name)) ++n;
  }
  return n;
}

inline std::string threads_phrase(const nlohmann::json& t, int pid) {
  const int threads = t.value("threads", 0);
  const int agent = std::min(agent_thread_count(pid), threads);
  std::string s = fmt::format("{} thread{}", threads, threads == 1 ? "" : "s");
  if (agent > 0) s += fmt::format(" ({} of them the agent's)", agent);
  return s;
}

// 0.2 ms, 12 ms, 14.1 s: a transition of an idle small process takes well under a millisecond.
inline std::string duration_phrase(int64_t us) {
  if (us < 10'000) return fmt::format("{:.1f} ms", static_cast<double>(us) / 1000.0);
  if (us < 10'000'000) return fmt::format("{} ms", us / 1000);
  return fmt::format("{:.1f} s", static_cast<double>(us) / 1e6);
}

// One line about the transition of an apply/revert report in process [pid], for people.
inline std::string transition_summary(const nlohmann::json& t, int pid) {
  if (t.value("model", "") == "immediate")
    return fmt::format("immediate: entry jumps written at once, no stack checked ({} thread visit(s) for the jump writes), in {}",
                       t.value("thread_visits", 0), duration_phrase(t.value("total_us", int64_t{0})));
  if (t.value("model", "") == "per-thread")
    return fmt::format("{} switched one at a time (at most {} stopped at once, longest stop {} us), in {}", threads_phrase(t, pid),
                       t.value("max_stopped_threads", 0), t.value("longest_stop_us", 0), duration_phrase(t.value("total_us", int64_t{0})));
  return fmt::format("{} stopped together for {} us, {} attempt(s)", threads_phrase(t, pid), t.value("stopped_us", 0L),
                     t.value("attempts", 0));
}

// The first line of the report of an apply/revert that finished a transition left in progress
// (`--on-timeout keep`): which one it was, and where the patch ended up.
inline std::string continued_summary(const nlohmann::json& r, const std::string& patch, int pid) {
  const std::string kind = r.value("continued", std::string("?"));  // "apply" or "revert"
  const bool reversed = r.value("reversed", false);
  const bool applied = (kind == "apply") != reversed;
  return fmt::format("{} the {} of patch '{}' that was in progress in process {}: the patch is {}",
                     reversed ? "reversed" : "finished", kind, patch, pid, applied ? "applied" : "not applied");
}

}  // namespace lg::cli
