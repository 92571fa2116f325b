// Hazard: the agent and the controller speak different protocol versions (a livegraft upgraded
// while a process kept the agent an older one injected). Both directions, with real processes:
// the real agent refuses a request of another version; the real livegraft refuses an agent of
// another version (LIVEGRAFT_TEST_PROTOCOL_VERSION makes it speak one; a fake agent of
// protocol 1 answers without "v"); nothing changes in the target either way.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "protocol/protocol.h"

namespace lg::e2e {
namespace {

using nlohmann::json;

// One connection to the agent of [pid], a line at a time.
class RawClient {
 public:
  explicit RawClient(pid_t pid) {
    std::string path = protocol::socket_path(::getuid(), pid);
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~RawClient() { ::close(fd_); }
  bool connected() const { return connected_; }
  json request(const json& req) {
    std::string line = req.dump() + "\n";
    (void)!::send(fd_, line.data(), line.size(), MSG_NOSIGNAL);
    std::string reply;
    for (;;) {
      pollfd p{fd_, POLLIN, 0};
      char c;
      if (::poll(&p, 1, 20000) <= 0 || ::read(fd_, &c, 1) != 1) return nullptr;
      if (c == '\n') break;
      reply += c;
    }
    json j = json::parse(reply, nullptr, false);
    return j.is_discarded() ? json(nullptr) : j;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

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
  std::string dir = protocol::socket_dir(::getuid());
  ::mkdir(dir.c_str(), 0700);
  int ready[2], log[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(log), 0);
  pid_t fake = ::fork();
  if (fake == 0) {
    int s = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::string path = protocol::socket_path(::getuid(), ::getpid());
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    ::unlink(path.c_str());
    char ok = ::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 && ::listen(s, 8) == 0 ? 'y' : 'n';
    (void)!::write(ready[1], &ok, 1);
    const std::string reply =
        R"({"ok":true,"protocol":1,"pid":1,"disabled":null,"transition":null,"patches":[],"functions":[]})"
        "\n";
    for (;;) {
      int c = ::accept(s, nullptr, nullptr);
      char buf[4096];
      ssize_t n;
      while ((n = ::read(c, buf, sizeof buf)) > 0) {
        (void)!::write(log[1], buf, static_cast<size_t>(n));  // what the controller sent
        for (ssize_t i = 0; i < n; ++i)
          if (buf[i] == '\n') (void)!::write(c, reply.data(), reply.size());
      }
      ::close(c);
    }
  }
  ::close(ready[1]);
  ::close(log[1]);
  char ok = 0;
  ASSERT_EQ(::read(ready[0], &ok, 1), 1);
  ASSERT_EQ(ok, 'y');
  const std::string pid = std::to_string(fake);
  CliRun r = livegraft({"--json", "revert", pid, "calc-fix"});
  CliRun s = livegraft({"--json", "status", pid});
  ::kill(fake, SIGKILL);
  ::waitpid(fake, nullptr, 0);
  ::unlink(protocol::socket_path(::getuid(), fake).c_str());
  std::string sent;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(log[0], buf, sizeof buf)) > 0) sent.append(buf, static_cast<size_t>(n));
  ::close(log[0]);
  ::close(ready[0]);
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
