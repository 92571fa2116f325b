// The controller SIGKILLed at every step of a per-thread transition (common/kill_point.h;
// tests/e2e/kill_points_test.cpp does the same for stop-the-world): apply (injecting the agent),
// revert, an apply that times out and reverses, and force. Each time the target must stay
// alive, every call chain must run one version (old outer+inner = 110, new = 220, tests/
// programs/pt_hazards.c), `livegraft status` must answer and agree, and the next command must
// finish whatever was left: `apply`/`revert` continue or reverse a transition in progress,
// `force` forces it.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/syscall.h>

#include <cstdio>
#include <functional>

#include "per_thread_support.h"

namespace lg::e2e {
namespace {

struct Scenario {
  std::string name;
  bool blocked = false;       // a thread blocked inside the old outer() holds the transition open
  bool inject_first = false;  // the agent is injected (and for revert, the patch applied) before
  bool applied_first = false;
  bool held_open = false;     // an apply left in progress (--on-timeout keep) before the command
  std::vector<std::string> command;  // after "PID" is substituted
  std::vector<std::string> required;  // kill points the command must reach
};

std::vector<std::string> with_pid(const std::vector<std::string>& args, const std::string& pid) {
  std::vector<std::string> out;
  for (const auto& a : args) out.push_back(a == "PID" ? pid : a);
  return out;
}

void set_up(Target& t, const Scenario& sc) {
  const std::string pid = std::to_string(t.pid());
  ASSERT_EQ(t.ask("i"), "idle");
  if (sc.inject_first) {
    ASSERT_EQ(livegraft({"inject", pid}).exit_code, 0);
  }
  if (sc.applied_first) {
    ASSERT_EQ(pt({"apply", pid, patch_path("pt_pair_fix")}).exit_code, 0);
  }
  if (sc.blocked) {
    ASSERT_EQ(t.ask("b"), "started");
    ASSERT_TRUE(wait_for_thread_in_syscall(t.pid(), {SYS_read}));
  }
  if (sc.held_open) {
    CliRun k = pt({"apply", "--timeout", "0.3", "--on-timeout", "keep", pid, patch_path("pt_pair_fix")});
    ASSERT_EQ(k.exit_code, 5) << k.err;
  }
}

// Everything after a kill; "" when the target is consistent and the next command recovered.
std::string check_after_kill(Target& t, const Scenario& sc) {
  const std::string pid = std::to_string(t.pid());
  if (!t.alive()) return "the target died";
  std::string c = t.ask("c");
  if (c != "110" && c != "220") return "the main thread mixed versions: outer() = " + c;
  CliRun s = livegraft({"--json", "status", pid});
  if (s.exit_code != 0 || !s.json.is_object()) return "status failed: " + s.out + s.err;
  if (!s.json["disabled"].is_null()) return "the agent is disabled: " + s.out;
  const auto& tr = s.json["transition"];
  bool enabled = false;
  for (const auto& p : s.json["patches"])
    if (p.value("name", "") == "pt-pair-fix" && p.value("state", "") == "enabled") enabled = true;
  CliRun next;
  std::string want;
  if (tr.is_object()) {
    // Only a transition whose threads were switching may outlive its controller (also while
    // its entries are int3s, after switch_early).
    if (tr.value("model", "") != "per-thread" || (tr.value("phase", "") != "switching" && tr.value("phase", "") != "poking"))
      return "a transition was left in phase '" + tr.value("phase", "") + "': " + s.out;
    if (!tr["threads"].is_object()) return "status did not survey the threads: " + s.out;
    if (sc.command[0] == "force") {
      next = livegraft({"force", pid});
      want = tr.value("reversed", false) == (tr.value("kind", "") == "apply") ? "110" : "220";
    } else if (sc.blocked) {
      // The blocked thread never leaves the old code: only going back can finish.
      next = pt({"revert", "--timeout", "20", pid, "pt-pair-fix"});
      want = "110";
    } else {
      next = pt({tr.value("kind", "") == "apply" ? "apply" : "revert", "--timeout", "20", pid,
                 tr.value("kind", "") == "apply" ? patch_path("pt_pair_fix") : "pt-pair-fix"});
      want = tr.value("kind", "") == "apply" ? "220" : "110";
    }
  } else {
    if (enabled != (c == "220")) return "status says the patch is " + std::string(enabled ? "" : "not ") + "enabled, outer() = " + c;
    if (enabled) {
      next = pt({"revert", "--timeout", "20", pid, "pt-pair-fix"});
      want = "110";
    } else if (sc.blocked) {
      t.send("r");  // release it first, or the apply cannot finish
      if (std::string d = t.read_line(); d != "done 110") return "the blocked thread mixed versions: " + d;
      next = pt({"apply", "--timeout", "20", pid, patch_path("pt_pair_fix")});
      want = "220";
    } else {
      next = pt({"apply", "--timeout", "20", pid, patch_path("pt_pair_fix")});
      want = "220";
    }
  }
  if (next.exit_code != 0) return "the next command failed: " + next.err;
  if (std::string after = t.ask("c"); after != want) return "after the next command outer() = " + after + ", not " + want;
  CliRun s2 = livegraft({"--json", "status", pid});
  if (!s2.json.is_object() || !s2.json["transition"].is_null()) return "a transition is still open after the next command: " + s2.out;
  return "";
}

// Lists the kill points of the scenario's command with LIVEGRAFT_KILL_TRACE=1, then runs it once
// per point with LIVEGRAFT_KILL_AT=N, each time on a fresh target. Returns the points.
std::vector<std::string> run_scenario(const Scenario& sc) {
  std::vector<std::string> points;
  {
    Target t(target_path("pt_hazards"));
    set_up(t, sc);
    CliRun r = pt(with_pid(sc.command, std::to_string(t.pid())), {"LIVEGRAFT_KILL_TRACE=1"});
    points = kill_points_of(r.err);
  }
  for (const auto& name : sc.required)
    EXPECT_NE(std::find(points.begin(), points.end(), name), points.end()) << sc.name << " has no kill point " << name;
  int survived = 0;
  for (size_t n = 1; n <= points.size(); ++n) {
    SCOPED_TRACE(sc.name + " killed at " + std::to_string(n) + " " + points[n - 1]);
    Target t(target_path("pt_hazards"));
    set_up(t, sc);
    CliRun r = pt(with_pid(sc.command, std::to_string(t.pid())), {"LIVEGRAFT_KILL_AT=" + std::to_string(n), "LIVEGRAFT_KILL_TRACE=1"});
    auto reached = kill_points_of(r.err);
    if (r.exit_code != 128 + SIGKILL || reached.size() != n || reached.back() != points[n - 1]) {
      ADD_FAILURE() << "the controller was not killed at that point (exit " << r.exit_code << "): " << r.err;
      continue;
    }
    std::string problem = check_after_kill(t, sc);
    if (problem.empty()) ++survived;
    else ADD_FAILURE() << problem;
  }
  std::printf("[ kill points ] %s: %d of %zu survived:", sc.name.c_str(), survived, points.size());
  for (const auto& p : points) std::printf(" %s", p.c_str());
  std::printf("\n");
  EXPECT_EQ(survived, static_cast<int>(points.size()));
  return points;
}

TEST(PerThreadKill, ApplyThatInjectsTheAgent) {
  Scenario sc{"apply", false, false, false, false, {"apply", "--timeout", "20", "PID", patch_path("pt_pair_fix")},
              {"apply.per_thread_loaded", "apply.per_thread_int3_written", "apply.per_thread_switch_early", "apply.per_thread_switching", "per_thread.thread_switched",
               "per_thread.before_complete", "per_thread.after_complete"}};
  auto points = run_scenario(sc);
  EXPECT_GE(points.size(), 3u);
}

TEST(PerThreadKill, Revert) {
  Scenario sc{"revert", false, true, true, false, {"revert", "--timeout", "20", "PID", "pt-pair-fix"},
              {"revert.per_thread_switching", "per_thread.thread_switched", "per_thread.before_complete", "per_thread.after_complete"}};
  run_scenario(sc);
}

TEST(PerThreadKill, ApplyThatTimesOutAndReverses) {
  Scenario sc{"apply reversed on timeout", true, true, false, false, {"apply", "--timeout", "0.3", "PID", patch_path("pt_pair_fix")},
              {"apply.per_thread_int3_written", "apply.per_thread_switching", "per_thread.thread_switched", "per_thread.after_reverse",
               "per_thread.after_complete"}};
  run_scenario(sc);
}

TEST(PerThreadKill, Force) {
  Scenario sc{"force", true, true, false, true, {"force", "PID"}, {"per_thread.thread_switched", "per_thread.before_complete", "per_thread.after_complete"}};
  run_scenario(sc);
}

}  // namespace
}  // namespace lg::e2e
