// Retired dispatch code is given back once no thread can be inside it (docs/consistency.md,
// "Memory"): hundreds of apply/revert cycles on a running multi-threaded process keep the
// agent's code arena at one size, and a thread parked below a call inside a retired relocated
// entry keeps it (no transition it is seen in frees it) until it has returned through it.
#include <gtest/gtest.h>
#include <sys/syscall.h>

#include "harness.h"
#include "per_thread_support.h"

namespace lg::e2e {
namespace {

struct Arena {
  uint64_t mapped = 0, in_use = 0, retired = 0, free = 0, retired_upto = 0, reclaimed_upto = 0;
};

Arena arena_of(const std::string& pid) {
  CliRun s = livegraft({"--json", "status", pid});
  EXPECT_EQ(s.exit_code, 0) << s.err;
  Arena a;
  if (!s.json.is_object() || !s.json.contains("arena")) {
    ADD_FAILURE() << "status has no arena: " << s.out;
    return a;
  }
  const auto& j = s.json["arena"];
  a.mapped = j.value("mapped", 0ull);
  a.in_use = j.value("in_use", 0ull);
  a.retired = j.value("retired", 0ull);
  a.free = j.value("free", 0ull);
  a.retired_upto = j.value("retired_upto", 0ull);
  a.reclaimed_upto = j.value("reclaimed_upto", 0ull);
  return a;
}

void cycles(Target& t, const std::string& pid, int from, int to, const std::vector<std::string>& model) {
  for (int i = from; i <= to; ++i) {
    std::vector<std::string> apply{"apply"}, revert{"revert"};
    apply.insert(apply.end(), model.begin(), model.end());
    revert.insert(revert.end(), model.begin(), model.end());
    apply.insert(apply.end(), {"--timeout", "20", pid, patch_path("arena_fix")});
    revert.insert(revert.end(), {"--timeout", "20", pid, "arena-fix"});
    CliRun a = livegraft(apply);
    ASSERT_EQ(a.exit_code, 0) << "cycle " << i << ": " << a.err;
    ASSERT_EQ(t.ask("c 5"), "17") << "cycle " << i;
    CliRun r = livegraft(revert);
    ASSERT_EQ(r.exit_code, 0) << "cycle " << i << ": " << r.err;
    ASSERT_EQ(t.ask("c 5"), "16") << "cycle " << i;
  }
}

void expect_bounded(const std::vector<std::string>& model, int first, int last) {
  Target t(target_path("arena_cycler"));
  const std::string pid = std::to_string(t.pid());
  ASSERT_EQ(t.ask("c 5"), "16");
  ASSERT_NO_FATAL_FAILURE(cycles(t, pid, 1, first, model));
  Arena at_first = arena_of(pid);
  ASSERT_NO_FATAL_FAILURE(cycles(t, pid, first + 1, last, model));
  Arena at_last = arena_of(pid);
  // Nothing is applied after a revert: what the arena holds is the last transitions' pieces
  // waiting for their grace period, the same amount after every cycle.
  EXPECT_EQ(at_first.mapped, at_last.mapped);
  EXPECT_EQ(at_first.in_use + at_first.retired, at_last.in_use + at_last.retired);
  EXPECT_EQ(at_last.in_use, 0u);
  EXPECT_LE(at_last.mapped, 4096u) << "one page holds a small patch's pieces";
  EXPECT_GT(at_last.retired_upto, at_first.retired_upto);
  EXPECT_GT(at_last.reclaimed_upto, at_first.reclaimed_upto) << "later transitions gave the retired pieces back";
  EXPECT_EQ(t.ask("e"), "0") << "a worker got an answer of neither version";
  EXPECT_EQ(t.quit(), 0);
}

TEST(PerThreadReclaim, TwoHundredApplyRevertCyclesKeepTheArenaAtOneSize) {
  expect_bounded({"--model", "per-thread"}, 50, 200);
}

TEST(PerThreadReclaim, StopTheWorldCyclesKeepTheArenaAtOneSizeToo) {
  expect_bounded({"--model", "stop-the-world"}, 10, 40);
}

TEST(PerThreadReclaim, ThreadParkedBelowACallInARetiredContinuationKeepsItUntilItReturns) {
  Target t(target_path("arena_cycler"));
  const std::string pid = std::to_string(t.pid());
  // work() stays redirected by arena_fix, so the forced transitions below write no entry jump
  // (a thread whose walk is incomplete would keep the jump from being written).
  ASSERT_EQ(pt({"apply", "--timeout", "20", pid, patch_path("arena_fix")}).exit_code, 0);
  ASSERT_EQ(t.ask("c 5"), "17");
  ASSERT_EQ(t.ask("h"), "holding");
  ASSERT_TRUE(wait_for_thread_in_syscall(t.pid(), {SYS_read}));
  // 1. park_hold() holds the parking thread in the old universe; the transition stays.
  CliRun a = pt({"--json", "apply", "--timeout", "1", "--on-timeout", "keep", pid, patch_path("arena_park_fix")});
  ASSERT_EQ(a.exit_code, 5) << a.err << a.out;
  // 2. It calls park_entry() through the relocated entry and blocks below its call: its
  //    return address is inside the continuation.
  ASSERT_EQ(t.ask("g"), "going");
  ASSERT_TRUE(wait_for_thread_in_syscall(t.pid(), {SYS_pause}));
  // 3. The apply reversed and completed: the entries go back, the continuations are retired.
  CliRun back = pt({"revert", "--timeout", "20", pid, "arena-park-fix"});
  ASSERT_EQ(back.exit_code, 0) << back.err;
  Arena retired = arena_of(pid);
  ASSERT_GT(retired.retired, 0u);
  // 4. Two later transitions see every thread; the parked one may be inside (its walk stops at
  //    the continuation, which has no CFI), so nothing retired is given back. It keeps them
  //    from switching it too: they are kept in progress and forced.
  for (const char* op : {"apply", "revert"}) {
    std::vector<std::string> args{"--json", op, "--timeout", "1", "--on-timeout", "keep", pid};
    args.push_back(std::string(op) == "apply" ? patch_path("arena_fix_b") : "arena-fix-b");
    CliRun k = pt(args);
    ASSERT_EQ(k.exit_code, 5) << op << ": " << k.err << k.out;
    CliRun f = livegraft({"force", pid});
    ASSERT_EQ(f.exit_code, 0) << op << ": " << f.err << f.out;
    Arena now = arena_of(pid);
    EXPECT_LT(now.reclaimed_upto, retired.retired_upto) << op << ": retired code was given back while a thread was inside it";
    EXPECT_GE(now.retired, retired.retired) << op;
  }
  EXPECT_EQ(t.ask("c 5"), "17");
  // 5. Woken, it returns through the continuation (still code, not int3) into park_entry.
  EXPECT_EQ(t.ask("r"), "returned 42");
  // 6. Now every thread is outside: the next transition gives everything retired before it back.
  ASSERT_EQ(pt({"apply", "--timeout", "20", pid, patch_path("arena_fix_b")}).exit_code, 0);
  EXPECT_EQ(t.ask("c 5"), "18");
  Arena freed = arena_of(pid);
  EXPECT_GE(freed.reclaimed_upto, retired.retired_upto);
  EXPECT_LT(freed.retired, retired.retired);
  ASSERT_EQ(pt({"revert", "--timeout", "20", pid, "arena-fix-b"}).exit_code, 0);
  ASSERT_EQ(pt({"revert", "--timeout", "20", pid, "arena-fix"}).exit_code, 0);
  EXPECT_EQ(t.ask("c 5"), "16");
  EXPECT_EQ(t.ask("e"), "0");
  EXPECT_EQ(t.quit(), 0);
}

}  // namespace
}  // namespace lg::e2e
