// Injection into a process started without the agent, and a preloaded agent.
#include <gtest/gtest.h>

#include "harness.h"

namespace lg::e2e {
namespace {

bool maps_agent(const std::string& maps) { return maps.find("liblivegraft-agent.so") != std::string::npos; }

TEST(Inject, IntoAProcessStartedWithoutTheAgent) {
  Target t(target_path("calc"));
  ASSERT_FALSE(maps_agent(t.maps()));
  CliRun r = livegraft({"--json", "inject", std::to_string(t.pid())});
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  EXPECT_EQ(r.json["injected"], true);
  EXPECT_TRUE(maps_agent(t.maps()));
  EXPECT_EQ(t.ask("c 5"), "51");  // the thread we borrowed went back to its read()
  CliRun again = livegraft({"--json", "inject", std::to_string(t.pid())});
  ASSERT_EQ(again.exit_code, 0);
  EXPECT_EQ(again.json["injected"], false);
  CliRun s = livegraft({"--json", "status", std::to_string(t.pid())});
  EXPECT_EQ(s.json["agent"], true);
  EXPECT_TRUE(s.json["disabled"].is_null()) << s.out;
}

TEST(Inject, ApplyInjectsOnDemandAndPreloadedAgentIsUsedAsIs) {
  Target plain(target_path("calc"));
  CliRun a = livegraft({"--json", "apply", std::to_string(plain.pid()), patch_path("calc_fix")});
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(a.json["agent_injected"], true);
  EXPECT_EQ(plain.ask("c 5"), "52");

  Target preloaded(target_path("calc"), {}, {"LD_PRELOAD=" + binary_dir() + "/liblivegraft-agent.so"});
  ASSERT_TRUE(maps_agent(preloaded.maps()));
  CliRun b = livegraft({"--json", "apply", std::to_string(preloaded.pid()), patch_path("calc_fix")});
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_EQ(b.json["agent_injected"], false);
  EXPECT_EQ(preloaded.ask("c 5"), "52");
}

}  // namespace
}  // namespace lg::e2e
