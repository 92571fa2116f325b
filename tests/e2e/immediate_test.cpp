// The immediate model (docs/consistency.md): no consistency at all, only for patches whose
// metadata declares it (LIVEGRAFT_PATCH_IMMEDIATE, `livegraft build --immediate-ok`).
#include <gtest/gtest.h>

#include "harness.h"

namespace lg::e2e {
namespace {

const nlohmann::json* patch_in_status(const nlohmann::json& status, const std::string& name) {
  for (const auto& p : status["patches"])
    if (p.value("name", "") == name) return &p;
  return nullptr;
}

TEST(Immediate, PatchWithoutTheDeclarationIsRefusedBeforeTheProcessIsTouched) {
  Target t(target_path("calc"));
  std::string pid = std::to_string(t.pid());
  CliRun a = livegraft({"--json", "apply", "--model", "immediate", pid, patch_path("calc_fix")});
  EXPECT_NE(a.exit_code, 0) << a.out;
  ASSERT_TRUE(a.json.is_object()) << a.out;
  EXPECT_NE(a.json.value("error", "").find("does not declare itself immediate"), std::string::npos) << a.out;
  EXPECT_NE(a.json.value("hint", "").find("--immediate-ok"), std::string::npos) << a.out;
  EXPECT_EQ(t.maps().find("liblivegraft-agent.so"), std::string::npos) << "nothing may be injected";
  EXPECT_EQ(t.ask("c 5"), "51");
}

TEST(Immediate, DeclaredPatchIsAppliedAndRevertedAndStatusShowsTheModel) {
  Target t(target_path("calc"));
  std::string pid = std::to_string(t.pid());
  ASSERT_EQ(t.ask("c 5"), "51");
  for (int round = 0; round < 2; ++round) {
    CliRun a = livegraft({"--json", "apply", "--model", "immediate", pid, patch_path("calc_immediate")});
    ASSERT_EQ(a.exit_code, 0) << a.err << a.out;
    EXPECT_EQ(a.json["transition"].value("model", ""), "immediate") << a.out;
    EXPECT_EQ(t.ask("c 5"), "52");
    CliRun s = livegraft({"--json", "status", pid});
    const nlohmann::json* p = patch_in_status(s.json, "calc-immediate");
    ASSERT_NE(p, nullptr) << s.out;
    EXPECT_EQ(p->value("model", ""), "immediate") << s.out;
    EXPECT_EQ(s.json["transition"], nullptr) << "an immediate transition completes at once: " << s.out;
    CliRun people = livegraft({"apply", "--model", "immediate", pid, patch_path("calc_immediate")});
    EXPECT_NE(people.exit_code, 0) << "already applied";
    CliRun r = livegraft({"--json", "revert", "--model", "immediate", pid, "calc-immediate"});
    ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
    EXPECT_EQ(t.ask("c 5"), "51");
  }
  EXPECT_EQ(t.quit(), 0);
}

TEST(Immediate, PatchAppliedWithConsistencyIsNotRevertedWithout) {
  Target t(target_path("calc"));
  std::string pid = std::to_string(t.pid());
  ASSERT_EQ(livegraft({"apply", "--model", "per-thread", pid, patch_path("calc_fix")}).exit_code, 0);
  CliRun s = livegraft({"--json", "status", pid});
  const nlohmann::json* p = patch_in_status(s.json, "calc-fix");
  ASSERT_NE(p, nullptr) << s.out;
  EXPECT_EQ(p->value("model", ""), "per-thread") << s.out;
  CliRun r = livegraft({"--json", "revert", "--model", "immediate", pid, "calc-fix"});
  EXPECT_NE(r.exit_code, 0) << r.out;
  EXPECT_NE(r.json.value("error", "").find("was applied with the per-thread model"), std::string::npos) << r.out;
  EXPECT_EQ(t.ask("c 5"), "52");
  ASSERT_EQ(livegraft({"revert", "--model", "per-thread", pid, "calc-fix"}).exit_code, 0);
  EXPECT_EQ(t.ask("c 5"), "51");
}

}  // namespace
}  // namespace lg::e2e
