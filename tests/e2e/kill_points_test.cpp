// The controller SIGKILLed at every kill point of apply and of revert (common/kill_point.h):
// each time the target must stay alive, behave either fully old or fully new, `livegraft status`
// must agree with that behaviour (no patch half-loaded, the agent not disabled, no transition
// left open), and the next command (apply again, or revert) must work.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <cstdio>

#include "harness.h"

namespace lg::e2e {
namespace {

// A patch of calc and how to tell its old code from its new code: each probe is a request and
// the answers of the old and of the new code.
struct PatchCase {
  std::string file;  // tests/patches or tests/e2e/patches object name
  std::string name;  // the patch's name
  struct Probe {
    std::string ask, old_answer, new_answer;
  };
  std::vector<Probe> probes;
};

enum class Behaviour { old_code, new_code, broken };

// Old when every probe gives the old answer, new when every probe gives the new one.
Behaviour behaviour(Target& t, const PatchCase& pc, std::string* answers) {
  size_t olds = 0, news = 0;
  answers->clear();
  for (const auto& p : pc.probes) {
    std::string a = t.ask(p.ask);
    *answers += "'" + p.ask + "' -> " + a + "; ";
    olds += a == p.old_answer;
    news += a == p.new_answer;
  }
  return olds == pc.probes.size() ? Behaviour::old_code : news == pc.probes.size() ? Behaviour::new_code : Behaviour::broken;
}

// Checks everything after a kill; returns "" when consistent, else what is wrong.
std::string check_after_kill(Target& t, const PatchCase& pc) {
  const std::string pid = std::to_string(t.pid());
  if (!t.alive()) return "the target died";
  std::string answers;
  Behaviour b = behaviour(t, pc, &answers);
  if (b == Behaviour::broken) return "the target runs neither all old nor all new code: " + answers;
  CliRun s = livegraft({"--json", "status", pid});
  if (s.exit_code != 0 || !s.json.is_object()) return "status failed: " + s.out + s.err;
  if (!s.json["disabled"].is_null()) return "the agent is disabled: " + s.out;
  if (!s.json.contains("transition") || !s.json["transition"].is_null()) return "a transition is still open: " + s.out;
  bool enabled = false;
  for (const auto& p : s.json["patches"]) {
    if (p.value("state", "") != "enabled") return "a patch is left in state '" + p.value("state", "") + "': " + s.out;
    enabled |= p.value("name", "") == pc.name;
  }
  if (enabled != (b == Behaviour::new_code))
    return std::string("status says the patch is ") + (enabled ? "" : "not ") + "enabled but the target answers " + answers;

  // The next command recovers: revert what is live, or apply what is not.
  CliRun next = b == Behaviour::new_code ? livegraft({"revert", pid, pc.name}) : livegraft({"apply", pid, patch_path(pc.file)});
  if (next.exit_code != 0) return "the next command failed: " + next.err;
  Behaviour after = behaviour(t, pc, &answers);
  if (after != (b == Behaviour::new_code ? Behaviour::old_code : Behaviour::new_code))
    return "after the next command the target answers " + answers;
  return "";
}

enum class Operation { apply, revert };

struct Count {
  int survived = 0, total = 0, writes = 0;  // writes: kill points right after a code write
};

// Lists the kill points of [op] with LIVEGRAFT_KILL_TRACE=1, then runs it once per kill point
// with LIVEGRAFT_KILL_AT=N, each time on a fresh calc (apply: without an agent, so that apply
// injects it; revert: with the patch applied). [required] must be among the points.
Count run_scenario(Operation op, const PatchCase& pc, const std::vector<std::string>& required) {
  const char* op_name = op == Operation::apply ? "apply" : "revert";
  auto setup = [&](Target& t) {
    if (op == Operation::revert) {
      CliRun a = livegraft({"apply", std::to_string(t.pid()), patch_path(pc.file)});
      EXPECT_EQ(a.exit_code, 0) << a.err;
    }
  };
  auto command = [&](Target& t) {
    return op == Operation::apply ? std::vector<std::string>{"apply", std::to_string(t.pid()), patch_path(pc.file)}
                                  : std::vector<std::string>{"revert", std::to_string(t.pid()), pc.name};
  };
  std::vector<std::string> points;
  {
    Target t(target_path("calc"));
    setup(t);
    CliRun r = livegraft_env(command(t), {"LIVEGRAFT_KILL_TRACE=1"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    points = kill_points_of(r.err);
  }
  for (const auto& name : required)
    EXPECT_NE(std::find(points.begin(), points.end(), name), points.end()) << op_name << " has no kill point " << name;
  Count count;
  count.total = static_cast<int>(points.size());
  for (const auto& p : points) count.writes += p.ends_with(".after_write");
  for (size_t n = 1; n <= points.size(); ++n) {
    SCOPED_TRACE(std::string(op_name) + " of " + pc.name + " killed at " + std::to_string(n) + " " + points[n - 1]);
    Target t(target_path("calc"));
    setup(t);
    CliRun r = livegraft_env(command(t), {"LIVEGRAFT_KILL_AT=" + std::to_string(n), "LIVEGRAFT_KILL_TRACE=1"});
    auto reached = kill_points_of(r.err);
    if (r.exit_code != 128 + SIGKILL || reached.size() != n || reached.back() != points[n - 1]) {
      ADD_FAILURE() << "the controller was not killed at that point (exit " << r.exit_code << "): " << r.err;
      continue;
    }
    std::string problem = check_after_kill(t, pc);
    if (problem.empty()) ++count.survived;
    else ADD_FAILURE() << problem;
  }
  std::printf("[ kill points ] %s of %s: %d of %d survived (%d right after a code write):", op_name, pc.name.c_str(),
              count.survived, count.total, count.writes);
  for (const auto& p : points) std::printf(" %s", p.c_str());
  std::printf("\n");
  return count;
}

const PatchCase kOneFunction{"calc_fix", "calc-fix", {{"c 5", "51", "52"}}};
// Two functions: several code writes, and kill points between them.
const PatchCase kTwoFunctions{"calc_two_funcs", "calc-two", {{"c 5", "51", "52"}, {"d 3", "3", "1003"}}};

const std::vector<std::string> kApplyPoints{"apply.after_inject", "apply.after_load",   "apply.after_seize",
                                            "apply.after_stop",   "apply.after_write",  "apply.after_resume",
                                            "apply.after_detach", "apply.after_commit"};
const std::vector<std::string> kRevertPoints{"revert.after_prepare", "revert.after_seize",  "revert.after_stop",
                                             "revert.after_write",   "revert.after_resume", "revert.after_detach",
                                             "revert.after_finish"};

TEST(KillPoints, ControllerKilledAtEveryStepOfApplyAndRevertLeavesTheTargetConsistent) {
  Count a = run_scenario(Operation::apply, kOneFunction, kApplyPoints);
  Count r = run_scenario(Operation::revert, kOneFunction, kRevertPoints);
  std::printf("[ kill points ] one function, total: %d of %d survived\n", a.survived + r.survived, a.total + r.total);
  EXPECT_GT(a.total, 0);
  EXPECT_GT(r.total, 0);
  EXPECT_EQ(a.survived + r.survived, a.total + r.total);
}

// The stop-the-world switch is one store of a generation word (docs/consistency.md): the kill
// points between the code writes of a two-function patch (entry jumps, slot stores, the word,
// entry bytes given back) leave every function old or every function new, like all others.
TEST(KillPoints, TwoFunctionPatchSurvivesEveryKillPointIncludingBetweenItsCodeWrites) {
  Count a = run_scenario(Operation::apply, kTwoFunctions, kApplyPoints);
  Count r = run_scenario(Operation::revert, kTwoFunctions, kRevertPoints);
  std::printf("[ kill points ] two functions, total: %d of %d survived\n", a.survived + r.survived, a.total + r.total);
  // Both functions' entries and the word: at least two kill points lie between two code writes.
  EXPECT_GE(a.writes, 3);
  EXPECT_GE(r.writes, 3);
  EXPECT_EQ(a.survived, a.total);
  EXPECT_EQ(r.survived, r.total);
}

}  // namespace
}  // namespace lg::e2e
