// --model for the commands that run a transition (docs/consistency.md, docs/cli.md).
#pragma once

#include <cstdlib>
#include <string>

#include <fmt/format.h>

#include "cli/commands.h"
#include "controller/operations.h"

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

// One line about the transition of an apply/revert report, for people.
inline std::string transition_summary(const nlohmann::json& t) {
  if (t.value("model", "") == "immediate")
    return fmt::format("immediate: entry jumps written at once, no stack checked ({} thread visit(s) for the jump writes), in {:.1f} ms",
                       t.value("thread_visits", 0), t.value("total_us", 0) / 1000.0);
  if (t.value("model", "") == "per-thread")
    return fmt::format("{} thread(s) switched one at a time (at most {} stopped at once, longest stop {} us), in {:.1f} ms",
                       t.value("threads", 0), t.value("max_stopped_threads", 0), t.value("longest_stop_us", 0),
                       t.value("total_us", 0) / 1000.0);
  return fmt::format("{} thread(s) stopped for {} us, {} attempt(s)", t.value("threads", 0), t.value("stopped_us", 0L),
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
