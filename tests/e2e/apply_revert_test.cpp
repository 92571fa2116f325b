// Apply and revert on single-threaded targets: behaviour changes and comes back, state kept,
// recursion, endbr64 entries, status, duplicate apply and unknown revert.
#include <gtest/gtest.h>

#include "harness.h"

namespace lg::e2e {
namespace {

TEST(ApplyRevert, BehaviourChangesAndComesBackTwiceInARow) {
  Target t(target_path("calc"));
  ASSERT_EQ(t.ask("c 5"), "51");
  for (int round = 0; round < 2; ++round) {
    CliRun a = livegraft({"apply", std::to_string(t.pid()), patch_path("calc_fix")});
    ASSERT_EQ(a.exit_code, 0) << a.err << a.out;
    EXPECT_NE(a.out.find("applied patch 'calc-fix'"), std::string::npos) << a.out;
    EXPECT_EQ(t.ask("c 5"), "52");
    CliRun r = livegraft({"revert", std::to_string(t.pid()), "calc-fix"});
    ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
    EXPECT_EQ(t.ask("c 5"), "51");
  }
  EXPECT_EQ(t.quit(), 0);
}

TEST(ApplyRevert, PatchKeepsUsingStaticStateAndStaticFunctionsOfTheTarget) {
  Target t(target_path("calc"));
  ASSERT_EQ(t.ask("c 1"), "11");
  ASSERT_EQ(t.ask("s"), "1");
  ASSERT_EQ(livegraft({"apply", std::to_string(t.pid()), patch_path("calc_fix")}).exit_code, 0);
  EXPECT_EQ(t.ask("c 1"), "12");
  EXPECT_EQ(t.ask("s"), "101");  // the patch called the target's static bump(100): same counter
  EXPECT_EQ(t.ask("m 7"), "7");  // the target changes its static scale; the patch reads it live
  EXPECT_EQ(t.ask("c 3"), "23");
  ASSERT_EQ(livegraft({"revert", std::to_string(t.pid()), "calc-fix"}).exit_code, 0);
  EXPECT_EQ(t.ask("c 3"), "22");
  EXPECT_EQ(t.ask("s"), "202");
}

TEST(ApplyRevert, RecursionThroughThePatchedFunction) {
  Target t(target_path("calc"));
  ASSERT_EQ(t.ask("d 10"), "10");
  ASSERT_EQ(livegraft({"apply", std::to_string(t.pid()), patch_path("calc_depth")}).exit_code, 0);
  EXPECT_EQ(t.ask("d 10"), "20");  // every level goes through the redirected entry
  EXPECT_EQ(t.ask("d 1000"), "2000");
  ASSERT_EQ(livegraft({"revert", std::to_string(t.pid()), "calc-depth"}).exit_code, 0);
  EXPECT_EQ(t.ask("d 10"), "10");
}

TEST(ApplyRevert, Endbr64EntryIsKept) {
  Target t(target_path("calc_cet"));
  ASSERT_EQ(t.ask("c 5"), "51");
  CliRun a = livegraft({"--json", "apply", std::to_string(t.pid()), patch_path("calc_fix")});
  ASSERT_EQ(a.exit_code, 0) << a.err << a.out;
  EXPECT_EQ(t.ask("c 5"), "52");
  ASSERT_EQ(livegraft({"revert", std::to_string(t.pid()), "calc-fix"}).exit_code, 0);
  EXPECT_EQ(t.ask("c 5"), "51");
}

// The report of an apply names what it replaced, in both models, and which threads were the
// agent's. It listed nothing once: the
// list was read through a reference into a temporary JSON document (a range-for over
// `encode(x)["funcs"]`), so it came out empty.
TEST(ApplyRevert, ApplyReportListsTheReplacedFunctionsInEveryModel) {
  for (const char* model : {"per-thread", "stop-the-world"}) {
    SCOPED_TRACE(model);
    Target t(target_path("calc"));
    CliRun a = livegraft({"--json", "apply", "--model", model, std::to_string(t.pid()), patch_path("calc_fix")});
    ASSERT_EQ(a.exit_code, 0) << a.err << a.out;
    ASSERT_EQ(a.json["functions"].size(), 1u) << a.out;
    EXPECT_EQ(a.json["functions"][0]["old_name"], "compute");
    EXPECT_NE(a.json["functions"][0]["new_addr"].get<uint64_t>(), 0u);
    ASSERT_EQ(livegraft({"revert", std::to_string(t.pid()), "calc-fix"}).exit_code, 0);
    CliRun text = livegraft({"apply", "--model", model, std::to_string(t.pid()), patch_path("calc_fix")});
    ASSERT_EQ(text.exit_code, 0) << text.err << text.out;
    EXPECT_NE(text.out.find("\n  compute "), std::string::npos) << text.out;
    // calc has one thread of its own; the others are the agent's, and the report says so.
    EXPECT_NE(text.out.find(" of them the agent's)"), std::string::npos) << text.out;
    EXPECT_EQ(text.out.find(" in 0 ms"), std::string::npos) << text.out;
  }
}

TEST(ApplyRevert, StatusShowsAppliedPatchesAsTextAndJson) {
  Target t(target_path("calc"));
  CliRun none = livegraft({"--json", "status", std::to_string(t.pid())});
  ASSERT_EQ(none.exit_code, 0) << none.err;
  EXPECT_EQ(none.json["patches"].size(), 0u);
  ASSERT_EQ(livegraft({"apply", std::to_string(t.pid()), patch_path("calc_fix")}).exit_code, 0);
  ASSERT_EQ(livegraft({"apply", std::to_string(t.pid()), patch_path("calc_depth")}).exit_code, 0);
  CliRun s = livegraft({"--json", "status", std::to_string(t.pid())});
  ASSERT_EQ(s.exit_code, 0) << s.err;
  ASSERT_TRUE(s.json.is_object()) << s.out;
  ASSERT_EQ(s.json["patches"].size(), 2u) << s.out;
  EXPECT_EQ(s.json["patches"][0]["name"], "calc-fix");
  EXPECT_EQ(s.json["patches"][0]["state"], "enabled");
  EXPECT_EQ(s.json["patches"][1]["name"], "calc-depth");
  CliRun text = livegraft({"status", std::to_string(t.pid())});
  EXPECT_NE(text.out.find("calc-depth"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("compute"), std::string::npos) << text.out;
  // Out of order: revert the first one, the second stays.
  ASSERT_EQ(livegraft({"revert", std::to_string(t.pid()), "calc-fix"}).exit_code, 0);
  EXPECT_EQ(t.ask("c 5"), "51");
  EXPECT_EQ(t.ask("d 3"), "6");
}

TEST(ApplyRevert, SamePatchTwiceIsRefusedAndUnknownRevertIsNotFound) {
  Target t(target_path("calc"));
  ASSERT_EQ(livegraft({"apply", std::to_string(t.pid()), patch_path("calc_fix")}).exit_code, 0);
  CliRun again = livegraft({"apply", std::to_string(t.pid()), patch_path("calc_fix")});
  EXPECT_NE(again.exit_code, 0);
  EXPECT_NE(again.err.find("already applied"), std::string::npos) << again.err;
  CliRun unknown = livegraft({"--json", "revert", std::to_string(t.pid()), "no-such-patch"});
  EXPECT_EQ(unknown.exit_code, 3);
  EXPECT_EQ(unknown.json["kind"], "not_found") << unknown.out;
  EXPECT_EQ(t.ask("c 5"), "52");
}

TEST(ApplyRevert, StackedPatchesOnOneFunctionRevertInAnyOrder) {
  Target t(target_path("calc"));
  ASSERT_EQ(livegraft({"apply", std::to_string(t.pid()), patch_path("calc_fix")}).exit_code, 0);
  ASSERT_EQ(livegraft({"apply", std::to_string(t.pid()), patch_path("compute_plus2")}).exit_code, 0);
  EXPECT_EQ(t.ask("c 5"), "52");
  EXPECT_EQ(t.ask("s"), "0");  // compute_plus2 does not bump: it is on top
  ASSERT_EQ(livegraft({"revert", std::to_string(t.pid()), "compute-plus2"}).exit_code, 0);
  EXPECT_EQ(t.ask("c 5"), "52");
  EXPECT_EQ(t.ask("s"), "100");  // calc-fix is active again
  ASSERT_EQ(livegraft({"apply", std::to_string(t.pid()), patch_path("compute_plus2")}).exit_code, 0);
  ASSERT_EQ(livegraft({"revert", std::to_string(t.pid()), "calc-fix"}).exit_code, 0);  // below the top
  EXPECT_EQ(t.ask("c 5"), "52");
  EXPECT_EQ(t.ask("s"), "100");
  ASSERT_EQ(livegraft({"revert", std::to_string(t.pid()), "compute-plus2"}).exit_code, 0);
  EXPECT_EQ(t.ask("c 5"), "51");
}

}  // namespace
}  // namespace lg::e2e
