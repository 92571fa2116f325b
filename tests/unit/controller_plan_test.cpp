// plan_apply against real running targets: what the controller resolves before touching a
// process (no ptrace), and what it refuses.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>

#include "child_process.h"  // tests/support
#include "controller/apply_plan.h"

namespace lg {
namespace {

std::string bin(const std::string& rel) { return std::string(LG_BINARY_DIR) + "/" + rel; }

// A target blocked reading its stdin (a pipe we never write), fully started ("ready").
struct Running {
  test::ChildProcess child;
  pid_t pid;
  explicit Running(const std::string& exe) : child(exe), pid(child.pid()) {
    EXPECT_EQ(child.read_line(test::ChildProcess::Stream::out, std::chrono::seconds(20)), "ready");
  }
};

TEST(ControllerPlan, ResolvesFunctionsStaticsAndImports) {
  Running t(bin("targets/calc"));
  auto plan = plan_apply(t.pid, bin("patches/calc_fix.o"), {});
  ASSERT_TRUE(plan.ok()) << plan.error().describe();
  ASSERT_EQ(plan->funcs.size(), 1u);
  const auto& f = plan->funcs[0];
  EXPECT_EQ(f.old_name, "compute");
  EXPECT_TRUE(plan->object_range.contains(f.addr));
  EXPECT_EQ(f.jump_addr, f.addr);  // no endbr64 in this build
  EXPECT_EQ(f.orig_bytes.size(), 5u);
  EXPECT_EQ(plan->patch.name, "calc-fix");
  EXPECT_FALSE(plan->build_id.empty());
  // The target's static variable and static function come from its .symtab.
  ASSERT_TRUE(plan->symbols.contains("scale"));
  ASSERT_TRUE(plan->symbols.contains("bump"));
  EXPECT_TRUE(plan->object_range.contains(RemoteAddr(plan->symbols["scale"].get<uint64_t>())));
  EXPECT_TRUE(plan->object_range.contains(RemoteAddr(plan->symbols["bump"].get<uint64_t>())));
  // libc's snprintf and strlen (an IFUNC) are resolved in the process with dlsym, as the
  // dynamic linker would bind them; the controller only checked that they exist.
  EXPECT_FALSE(plan->symbols.contains("snprintf"));
  EXPECT_NE(std::find(plan->dlsym.begin(), plan->dlsym.end(), "snprintf"), plan->dlsym.end());
  EXPECT_NE(std::find(plan->dlsym.begin(), plan->dlsym.end(), "strlen"), plan->dlsym.end());
  auto ranges = plan->original_ranges();
  ASSERT_FALSE(ranges.empty());
  EXPECT_TRUE(ranges[0].contains(f.addr));
}

TEST(ControllerPlan, JumpGoesAfterEndbr64) {
  Running t(bin("targets/calc_cet"));
  auto plan = plan_apply(t.pid, bin("patches/calc_fix.o"), {});
  ASSERT_TRUE(plan.ok()) << plan.error().describe();
  EXPECT_EQ(plan->funcs[0].jump_addr, plan->funcs[0].addr + 4);
}

TEST(ControllerPlan, RefusesWrongBuildIdMissingSymbolsAndDeadProcesses) {
  Running t(bin("targets/calc"));
  auto bid = plan_apply(t.pid, bin("patches/bad_build_id.o"), {});
  ASSERT_FALSE(bid.ok());
  EXPECT_EQ(bid.error().kind, ErrorKind::mismatch);
  EXPECT_NE(bid.error().message.find("00112233445566778899aabbccddeeff00112233"), std::string::npos);

  auto sym = plan_apply(t.pid, bin("patches/bad_missing_symbol.o"), {});
  ASSERT_FALSE(sym.ok());
  EXPECT_EQ(sym.error().kind, ErrorKind::not_found);
  EXPECT_NE(sym.error().message.find("livegraft_no_such_function"), std::string::npos);

  auto fn = plan_apply(t.pid, bin("patches/bad_missing_function.o"), {});
  ASSERT_FALSE(fn.ok());
  EXPECT_NE(fn.error().message.find("livegraft_not_in_target"), std::string::npos);

  pid_t gone = fork();
  if (gone == 0) _exit(0);
  waitpid(gone, nullptr, 0);
  auto dead = plan_apply(gone, bin("patches/calc_fix.o"), {});
  ASSERT_FALSE(dead.ok());
  EXPECT_EQ(dead.error().kind, ErrorKind::not_found);
}

}  // namespace
}  // namespace lg
