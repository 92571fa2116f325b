// The agent keeps answering whatever one client or one patch does: a connected client that
// says nothing, a second client during another's transition, a patch constructor that never
// returns.
#include <gtest/gtest.h>
#include <unistd.h>

#include <thread>

#include "harness.h"
#include "raw_agent.h"
#include "protocol/protocol.h"

namespace lg::e2e {
namespace {

using nlohmann::json;

TEST(AgentLiveness, SilentClientDoesNotBlockOthers) {
  Target t(target_path("calc"));
  const std::string pid = std::to_string(t.pid());
  ASSERT_EQ(livegraft({"inject", pid}).exit_code, 0);
  RawClient silent(t.pid());
  ASSERT_TRUE(silent.connected());
  RawClient half(t.pid());  // sent half a request and stopped
  ASSERT_TRUE(half.connected());
  half.send(R"({"op":"sta)");

  CliRun s = livegraft({"--json", "status", pid});
  ASSERT_EQ(s.exit_code, 0) << "status waited behind a silent client: " << s.err;
  EXPECT_EQ(s.json["agent"], true);
  CliRun a = livegraft({"--json", "apply", pid, patch_path("calc_fix")});
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(t.ask("c 5"), "52");
  // The silent clients are still served when they speak.
  EXPECT_EQ(silent.request({{"op", "hello"}})["ok"], true);
  half.send("tus\",\"v\":" + std::to_string(lg::protocol::kVersion) + "}\n");
  json rest = half.request({{"op", "hello"}});
  EXPECT_EQ(rest["ok"], true) << rest.dump();
}

// The "controller died mid-transition" rule: only the end of the connection that opened the
// transition settles it, not the end of another client served meanwhile.
TEST(AgentLiveness, AnotherClientsEndDoesNotSettleATransition) {
  Target t(target_path("sleeper"), {"4000"});
  const std::string pid = std::to_string(t.pid());
  ASSERT_EQ(livegraft({"inject", pid}).exit_code, 0);
  ASSERT_EQ(t.ask("b"), "started");  // a thread sleeps inside compute(): apply has to wait
  CliRun applied;
  std::thread controller([&] { applied = livegraft({"--json", "apply", "--timeout", "60", pid, patch_path("sleeper_fix")}); });

  // Wait (bounded) until the controller's load opened the transition, as another client sees it.
  json hello;
  bool seen = false;
  for (int i = 0; i < 400 && !seen; ++i) {
    RawClient other(t.pid());
    hello = other.request({{"op", "hello"}});
    seen = hello.is_object() && hello["transition"] == "sleeper-fix";
    if (!seen) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }  // each of those clients closed here, while the transition was open
  EXPECT_TRUE(seen) << "no other client was answered during the transition: " << hello.dump();
  if (seen) {
    RawClient again(t.pid());
    json h = again.request({{"op", "hello"}});
    EXPECT_EQ(h["transition"], "sleeper-fix") << "another client's end settled the transition: " << h.dump();
  }
  controller.join();
  ASSERT_EQ(applied.exit_code, 0) << applied.err;
  EXPECT_EQ(t.read_line(std::chrono::seconds(20)), "done 1");
  EXPECT_EQ(t.ask("c"), "2");
}

TEST(AgentLiveness, PatchConstructorThatNeverReturnsLeavesTheAgentAnswering) {
  Target t(target_path("calc"), {}, {"LIVEGRAFT_AGENT_REQUEST_TIMEOUT_MS=1000"});
  const std::string pid = std::to_string(t.pid());
  ASSERT_EQ(livegraft({"inject", pid}).exit_code, 0);
  CliRun stuck = livegraft({"apply", pid, patch_path("calc_stuck_ctor")});
  EXPECT_NE(stuck.exit_code, 0);
  EXPECT_NE(stuck.err.find("did not finish within 1000 ms"), std::string::npos) << stuck.err;

  CliRun s = livegraft({"--json", "status", pid});
  ASSERT_EQ(s.exit_code, 0) << s.err;
  ASSERT_TRUE(s.json["disabled"].is_string()) << s.out;
  EXPECT_NE(s.json["disabled"].get<std::string>().find("constructor"), std::string::npos) << s.out;
  EXPECT_EQ(t.ask("c 5"), "51") << "nothing was redirected";
  CliRun again = livegraft({"apply", pid, patch_path("calc_fix")});
  EXPECT_NE(again.exit_code, 0) << "a disabled agent must refuse further loads";
  EXPECT_NE(again.err.find("disabled"), std::string::npos) << again.err;
  EXPECT_EQ(t.ask("c 5"), "51");
}

}  // namespace
}  // namespace lg::e2e
