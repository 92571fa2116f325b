// The controller SIGKILLed at every kill point of apply and of revert (common/kill_point.h):
// each time the target must stay alive, behave either fully old or fully new, `livegraft status`
// must agree with that behaviour (no patch half-loaded, the agent not disabled, no transition
// left open), and the next command (apply again, or revert) must work.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <functional>

#include "harness.h"

namespace lg::e2e {
namespace {

constexpr const char* kPatchName = "calc-fix";

// calc's compute(5) is 51; with calc_fix it is 52.
enum class Behaviour { old_code, new_code, broken };

Behaviour behaviour(Target& t, std::string* answer) {
  *answer = t.ask("c 5");
  return *answer == "51" ? Behaviour::old_code : *answer == "52" ? Behaviour::new_code : Behaviour::broken;
}

// Checks everything after a kill; returns "" when consistent, else what is wrong.
std::string check_after_kill(Target& t) {
  const std::string pid = std::to_string(t.pid());
  if (!t.alive()) return "the target died";
  std::string answer;
  Behaviour b = behaviour(t, &answer);
  if (b == Behaviour::broken) return "compute(5) answered '" + answer + "', neither old (51) nor new (52)";
  CliRun s = livegraft({"--json", "status", pid});
  if (s.exit_code != 0 || !s.json.is_object()) return "status failed: " + s.out + s.err;
  if (!s.json["disabled"].is_null()) return "the agent is disabled: " + s.out;
  if (!s.json.contains("transition") || !s.json["transition"].is_null()) return "a transition is still open: " + s.out;
  bool enabled = false;
  for (const auto& p : s.json["patches"]) {
    if (p.value("state", "") != "enabled") return "a patch is left in state '" + p.value("state", "") + "': " + s.out;
    enabled |= p.value("name", "") == kPatchName;
  }
  if (enabled != (b == Behaviour::new_code))
    return std::string("status says the patch is ") + (enabled ? "" : "not ") + "enabled but compute(5) is " + answer;

  // The next command recovers: revert what is live, or apply what is not.
  CliRun next = b == Behaviour::new_code ? livegraft({"revert", pid, kPatchName})
                                         : livegraft({"apply", pid, patch_path("calc_fix")});
  if (next.exit_code != 0) return "the next command failed: " + next.err;
  Behaviour after = behaviour(t, &answer);
  if (after != (b == Behaviour::new_code ? Behaviour::old_code : Behaviour::new_code))
    return "after the next command compute(5) is " + answer;
  return "";
}

struct Scenario {
  const char* name;
  std::function<void(Target&)> setup;                              // brings a fresh target to the start state
  std::function<std::vector<std::string>(Target&)> command;        // the command under test
  std::vector<std::string> required;                               // kill points that must exist
};

// Runs [scenario] once with LIVEGRAFT_KILL_TRACE=1 to list its kill points, then once per kill
// point with LIVEGRAFT_KILL_AT=N. Returns {survived, total}.
std::pair<int, int> run_scenario(const Scenario& sc) {
  std::vector<std::string> points;
  {
    Target t(target_path("calc"));
    sc.setup(t);
    CliRun r = livegraft_env(sc.command(t), {"LIVEGRAFT_KILL_TRACE=1"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    points = kill_points_of(r.err);
  }
  for (const auto& name : sc.required)
    EXPECT_NE(std::find(points.begin(), points.end(), name), points.end())
        << sc.name << " has no kill point " << name;
  int survived = 0;
  for (size_t n = 1; n <= points.size(); ++n) {
    SCOPED_TRACE(std::string(sc.name) + " killed at " + std::to_string(n) + " " + points[n - 1]);
    Target t(target_path("calc"));
    sc.setup(t);
    CliRun r = livegraft_env(sc.command(t), {"LIVEGRAFT_KILL_AT=" + std::to_string(n), "LIVEGRAFT_KILL_TRACE=1"});
    auto reached = kill_points_of(r.err);
    if (r.exit_code != 128 + SIGKILL || reached.size() != n || reached.back() != points[n - 1]) {
      ADD_FAILURE() << "the controller was not killed at that point (exit " << r.exit_code << "): " << r.err;
      continue;
    }
    std::string problem = check_after_kill(t);
    if (problem.empty()) ++survived;
    else ADD_FAILURE() << problem;
  }
  std::printf("[ kill points ] %s: %d of %zu survived:", sc.name, survived, points.size());
  for (const auto& p : points) std::printf(" %s", p.c_str());
  std::printf("\n");
  return {survived, static_cast<int>(points.size())};
}

TEST(KillPoints, ControllerKilledAtEveryStepOfApplyAndRevertLeavesTheTargetConsistent) {
  Scenario apply{"apply",
                 [](Target&) {},  // a fresh process: apply injects the agent too
                 [](Target& t) { return std::vector<std::string>{"apply", std::to_string(t.pid()), patch_path("calc_fix")}; },
                 {"apply.after_inject", "apply.after_load", "apply.after_seize", "apply.after_stop",
                  "apply.after_write", "apply.after_resume", "apply.after_detach", "apply.after_commit"}};
  Scenario revert{"revert",
                  [](Target& t) {
                    CliRun a = livegraft({"apply", std::to_string(t.pid()), patch_path("calc_fix")});
                    ASSERT_EQ(a.exit_code, 0) << a.err;
                  },
                  [](Target& t) { return std::vector<std::string>{"revert", std::to_string(t.pid()), kPatchName}; },
                  {"revert.after_prepare", "revert.after_seize", "revert.after_stop", "revert.after_write",
                   "revert.after_resume", "revert.after_detach", "revert.after_finish"}};
  auto [a_ok, a_total] = run_scenario(apply);
  auto [r_ok, r_total] = run_scenario(revert);
  std::printf("[ kill points ] total: %d of %d survived\n", a_ok + r_ok, a_total + r_total);
  EXPECT_GT(a_total + r_total, 0);
  EXPECT_EQ(a_ok + r_ok, a_total + r_total);
}

}  // namespace
}  // namespace lg::e2e
