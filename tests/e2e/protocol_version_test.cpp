// Hazard: the agent and the controller speak different protocol versions (a livegraft upgraded
// while a process kept the agent an older one injected). Both directions, with real processes:
// the real agent refuses a request of another version; the real livegraft refuses an agent of
// another version (LIVEGRAFT_TEST_PROTOCOL_VERSION makes it speak one; a fake agent of
// protocol 1 answers without "v"); nothing changes in the target either way.
#include <gtest/gtest.h>
#include <unistd.h>

#include "harness.h"
#include "raw_agent.h"
#include "protocol/protocol.h"

namespace lg::e2e {
namespace {

using nlohmann::json;

std::string error_of(const CliRun& r) { return r.json.is_object() ? r.json.value("error", "") : ""; }

TEST(ProtocolVersion, AgentRefusesARequestOfAnotherVersionAndChangesNothing) {
  Target t(target_path("calc"));
  const std::string pid = std::to_string(t.pid());
  ASSERT_EQ(livegraft({"apply", pid, patch_path("calc_fix")}).exit_code, 0);
  ASSERT_EQ(t.ask("c 5"), "52");
  RawClient c(t.pid());
  ASSERT_TRUE(c.connected());
  // A controller of protocol 1 (no "v") and one of a later protocol try to revert.
  for (json v : {json(nullptr), json(protocol::kVersion + 1)}) {
    json req = {{"op", "prepare_revert"}, {"name", "calc-fix"}};
    if (!v.is_null()) req["v"] = v;
    json r = c.request(req);
    ASSERT_TRUE(r.is_object()) << "no answer";
    EXPECT_EQ(r["ok"], false) << r.dump();
    EXPECT_EQ(r["kind"], "version") << r.dump();
    std::string msg = r.value("error", "");
    EXPECT_NE(msg.find(fmt::format("this agent speaks protocol {}", protocol::kVersion)), std::string::npos) << msg;
    EXPECT_NE(msg.find(v.is_null() ? "speaks agent protocol none (protocol 1)" : fmt::format("speaks agent protocol {}", v.get<int>())),
              std::string::npos) << msg;
  }
  // hello answers any version, and says which the agent speaks.
  json h = c.request({{"op", "hello"}, {"v", 1}});
  EXPECT_EQ(h["protocol"], protocol::kVersion) << h.dump();
  // Nothing was prepared: the patch still runs, and a revert of this version works.
  EXPECT_EQ(t.ask("c 5"), "52");
  CliRun s = livegraft({"--json", "status", pid});
  ASSERT_EQ(s.exit_code, 0) << s.err;
  EXPECT_TRUE(s.json["transition"].is_null()) << s.out;
  ASSERT_EQ(livegraft({"revert", pid, "calc-fix"}).exit_code, 0);
  EXPECT_EQ(t.ask("c 5"), "51");
}

TEST(ProtocolVersion, ControllerOfAnotherVersionSaysSoAndChangesNothing) {
  Target t(target_path("calc"));
  const std::string pid = std::to_string(t.pid());
  ASSERT_EQ(livegraft({"inject", pid}).exit_code, 0);
  const std::string speaks = std::to_string(protocol::kVersion + 1);
  for (const auto& args : std::vector<std::vector<std::string>>{{"--json", "apply", pid, patch_path("calc_fix")},
                                                                {"--json", "status", pid},
                                                                {"--json", "revert", pid, "calc-fix"}}) {
    CliRun r = livegraft_env(args, {"LIVEGRAFT_TEST_PROTOCOL_VERSION=" + speaks});
    EXPECT_EQ(r.exit_code, 7) << r.out << r.err;
    EXPECT_EQ(r.json.value("kind", ""), "version") << r.out;
    std::string want = fmt::format("agent in process {} speaks protocol {}, this livegraft speaks {}", pid, protocol::kVersion, speaks);
    EXPECT_NE(error_of(r).find(want), std::string::npos) << r.out;
    EXPECT_NE(r.json.value("hint", "").find("restart the process"), std::string::npos) << r.out;
  }
  EXPECT_EQ(t.ask("c 5"), "51") << "nothing was applied";
  CliRun a = livegraft({"apply", pid, patch_path("calc_fix")});
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(t.ask("c 5"), "52");
}

// An agent of protocol 1 (it answers every line without "v", as the fake does) is refused at
// its first reply, before anything that changes the process is sent.
TEST(ProtocolVersion, AgentOfProtocolOneIsRefusedAtItsFirstReply) {
  FakeAgent fake(R"({"ok":true,"protocol":1,"pid":1,"disabled":null,"transition":null,"patches":[],"functions":[]})");
  ASSERT_TRUE(fake.ready());
  const std::string pid = fake.pid();
  CliRun r = livegraft({"--json", "revert", pid, "calc-fix"});
  CliRun s = livegraft({"--json", "status", pid});
  const std::string sent = fake.sent();
  for (const CliRun* run : {&r, &s}) {
    EXPECT_EQ(run->exit_code, 7) << run->out << run->err;
    EXPECT_EQ(run->json.value("kind", ""), "version") << run->out;
    EXPECT_NE(error_of(*run).find(fmt::format("agent in process {} speaks protocol 1, this livegraft speaks {}", pid, protocol::kVersion)),
              std::string::npos)
        << run->out;
  }
  EXPECT_EQ(sent.find("prepare_revert"), std::string::npos) << "a change was sent to an agent of another version:\n" << sent;
  EXPECT_NE(sent.find("\"status\""), std::string::npos) << sent;
}

}  // namespace
}  // namespace lg::e2e
