// liblivegraft-agent.so in real processes: preloaded into `sleep`, dlopen'ed into a small host
// compiled at test time, loaded twice, forked; the control socket's peer-credential check.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/fsuid.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "agent/server.h"
#include "agent/test_helpers.h"

using namespace lg;
using namespace lg::agent;
using namespace lg::agent::testing;
using nlohmann::json;

namespace {

const std::string kAgentSo = LG_BINARY_DIR "/liblivegraft-agent.so";
constexpr uid_t kNobody = 65534;

int connect_to(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    int e = errno;
    ::close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

std::string read_line(int fd) {
  std::string s;
  char c;
  while (::read(fd, &c, 1) == 1 && c != '\n') s += c;
  return s;
}

json request(int fd, const json& req) {
  std::string line = req.dump() + "\n";
  if (::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) return json();
  std::string resp = read_line(fd);
  return resp.empty() ? json() : json::parse(resp);
}

int count_agent_threads(pid_t pid) {
  int n = 0;
  std::error_code ec;
  for (const auto& t : std::filesystem::directory_iterator(fmt::format("/proc/{}/task", pid), ec)) {
    std::ifstream in(t.path() / "comm");
    std::string comm;
    std::getline(in, comm);
    n += comm == "livegraft-agent";
  }
  return n;
}

// A child process running [argv] with [preload] in LD_PRELOAD; killed on destruction.
class Child {
 public:
  Child(std::vector<std::string> argv, const std::string& preload) {
    pid_ = ::fork();
    if (pid_ == 0) {
      if (!preload.empty()) ::setenv("LD_PRELOAD", preload.c_str(), 1);
      std::vector<char*> args;
      for (auto& a : argv) args.push_back(a.data());
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
  }
  ~Child() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      ::unlink(socket_path(::getuid(), pid_).c_str());  // SIGKILL leaves the socket behind
    }
  }
  pid_t pid() const { return pid_; }
  std::string socket() const { return socket_path(::getuid(), pid_); }
  // Connects to the child's agent, waiting for it to come up (bounded: fails after ~20 s).
  int connect_agent() const {
    for (int i = 0; i < 2000; ++i) {
      int fd = connect_to(socket());
      if (fd >= 0) return fd;
      if (::waitpid(pid_, nullptr, WNOHANG) == pid_) return -1;
      ::usleep(10000);
    }
    return -1;
  }

 private:
  pid_t pid_ = -1;
};

// A host that optionally dlopen()s the agent and optionally forks a child that stays alive
// without exec; it prints the child's pid and then sleeps.
const char* kHostSource = R"(
  #include <dlfcn.h>
  #include <stdio.h>
  #include <string.h>
  #include <unistd.h>
  int main(int argc, char **argv) {
    for (int i = 1; i < argc; ++i) {
      if (!strcmp(argv[i], "dlopen") && !dlopen(argv[++i], RTLD_NOW)) { fprintf(stderr, "%s\n", dlerror()); return 2; }
      if (!strcmp(argv[i], "fork")) {
        pid_t p = fork();
        if (p == 0) { sleep(60); return 0; }
        FILE *f = fopen(argv[++i], "w"); fprintf(f, "%d\n", (int)p); fclose(f);
      }
    }
    sleep(60);
    return 0;
  }
)";

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access(kAgentSo.c_str(), R_OK) != 0) GTEST_SKIP() << kAgentSo << " is not built (target livegraft-agent)";
  }
  std::string build_host() {
    std::string log;
    std::string obj = compile_patch(dir_, "host", kHostSource, Lang::c, &log, "");
    if (obj.empty()) return "";
    std::string exe = dir_.path() + "/host";
    std::string cmd = "gcc -o " + exe + " " + obj + " -ldl";
    return std::system(cmd.c_str()) == 0 ? exe : "";
  }
  TempDir dir_;
};

TEST_F(ServerTest, PreloadedAgentAnswersHelloAndStatus) {
  Child child({"/bin/sleep", "60"}, kAgentSo);
  int fd = child.connect_agent();
  ASSERT_GE(fd, 0) << "no agent socket at " << child.socket();
  auto hello = request(fd, {{"op", "hello"}});
  EXPECT_EQ(hello["ok"], true) << hello.dump();
  EXPECT_EQ(hello["protocol"], 1);
  EXPECT_EQ(hello["pid"], child.pid());
  EXPECT_TRUE(hello["disabled"].is_null()) << hello.dump();
  auto status = request(fd, {{"op", "status"}});
  EXPECT_EQ(status["ok"], true);
  EXPECT_TRUE(status["patches"].empty());
  auto bad = request(fd, {{"op", "nonsense"}});
  EXPECT_EQ(bad["kind"], "invalid_argument");
  EXPECT_EQ(request(fd, {{"op", "hello"}})["ok"], true) << "the connection survives a bad request";
  ::close(fd);
  EXPECT_EQ(count_agent_threads(child.pid()), 1);
  struct stat st{};
  ASSERT_EQ(::stat(socket_dir(::getuid()).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  EXPECT_EQ(st.st_uid, ::getuid());
}

TEST_F(ServerTest, ForeignUidIsRefusedByPeerCredentials) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to act as another uid";
  Child child({"/bin/sleep", "60"}, kAgentSo);
  int fd = child.connect_agent();
  ASSERT_GE(fd, 0);
  ::close(fd);
  std::string path = child.socket();

  // 1. A process whose effective uid is nobody but whose filesystem uid is still root: it can
  //    reach the socket file, so only SO_PEERCRED (which reports the euid) can stop it.
  pid_t p = ::fork();
  if (p == 0) {
    if (::setresuid(static_cast<uid_t>(-1), kNobody, static_cast<uid_t>(-1)) != 0) ::_exit(3);
    ::setfsuid(0);
    if (static_cast<uid_t>(::setfsuid(static_cast<uid_t>(-1))) != 0) ::_exit(4);
    int c = connect_to(path);
    if (c < 0) ::_exit(2);
    std::string line = read_line(c);
    auto j = json::parse(line, nullptr, false);
    ::_exit(j.is_object() && j["ok"] == false && j["kind"] == "permission" ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(p, &status, 0), p);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1: not refused, 2: could not connect, 3/4: could not change uid";

  // 2. Entirely nobody: the 0700 directory already keeps it out.
  p = ::fork();
  if (p == 0) {
    if (::setgid(kNobody) != 0 || ::setuid(kNobody) != 0) ::_exit(3);
    int c = connect_to(path);
    ::_exit(c < 0 && errno == EACCES ? 0 : 1);
  }
  ASSERT_EQ(::waitpid(p, &status, 0), p);
  EXPECT_EQ(WEXITSTATUS(status), 0);

  // The agent still serves its owner.
  fd = connect_to(path);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(request(fd, {{"op", "hello"}})["ok"], true);
  ::close(fd);
}

TEST_F(ServerTest, SecondCopyOfTheAgentDoesNotStartASecondServer) {
  std::string copy = dir_.path() + "/liblivegraft-agent-copy.so";
  std::filesystem::copy_file(kAgentSo, copy);
  Child child({"/bin/sleep", "60"}, kAgentSo + ":" + copy);
  int fd = child.connect_agent();
  ASSERT_GE(fd, 0);
  EXPECT_EQ(request(fd, {{"op", "hello"}})["ok"], true);
  ::close(fd);
  EXPECT_EQ(count_agent_threads(child.pid()), 1);
}

TEST_F(ServerTest, DlopenedAgentServesAndForkedChildHasNoServer) {
  std::string host = build_host();
  ASSERT_FALSE(host.empty());
  std::string pidfile = dir_.path() + "/child.pid";
  Child child({host, "dlopen", kAgentSo, "fork", pidfile}, "");
  int fd = child.connect_agent();
  ASSERT_GE(fd, 0) << "the dlopen'ed agent did not come up";
  EXPECT_EQ(request(fd, {{"op", "hello"}})["pid"], child.pid());
  ::close(fd);
  pid_t grandchild = -1;
  for (int i = 0; i < 2000 && grandchild <= 0; ++i) {
    std::ifstream in(pidfile);
    if (!(in >> grandchild)) grandchild = -1, ::usleep(10000);
  }
  ASSERT_GT(grandchild, 0);
  EXPECT_EQ(count_agent_threads(grandchild), 0);
  EXPECT_NE(::access(socket_path(::getuid(), grandchild).c_str(), F_OK), 0);
  ::kill(grandchild, SIGKILL);
  // The parent still serves after its child went away.
  fd = connect_to(child.socket());
  ASSERT_GE(fd, 0);
  EXPECT_EQ(request(fd, {{"op", "status"}})["ok"], true);
  ::close(fd);
}

TEST(SocketDirTest, RefusesDirectoriesOthersCouldUse) {
  TempDir dir;
  std::string d = dir.path() + "/sockets";
  ASSERT_TRUE(prepare_socket_dir(d, ::getuid()));
  ::chmod(d.c_str(), 0755);
  auto loose = prepare_socket_dir(d, ::getuid());
  ASSERT_FALSE(loose);
  EXPECT_EQ(loose.error().kind, ErrorKind::permission);
  auto other = prepare_socket_dir(dir.path() + "/sockets", ::getuid() + 1);
  EXPECT_FALSE(other);
  std::string link = dir.path() + "/link";
  ASSERT_EQ(::symlink(d.c_str(), link.c_str()), 0);
  EXPECT_FALSE(prepare_socket_dir(link, ::getuid()));
}

// ---- The ptrace rule as a pure function (may_control).

Credentials plain(uid_t uid, gid_t gid) {
  Credentials c;
  c.ruid = c.euid = c.suid = uid;
  c.rgid = c.egid = c.sgid = gid;
  return c;
}

PeerCredentials peer(uid_t uid, gid_t gid) {
  PeerCredentials p;
  p.pid = 4242;
  p.uid = uid;
  p.gid = gid;
  return p;
}

PeerCredentials root_peer(uint64_t caps) {
  PeerCredentials p = peer(0, 0);
  p.caps_known = true;
  p.cap_permitted = p.cap_effective = caps;
  return p;
}

constexpr uint64_t kAllCaps = (uint64_t{1} << 41) - 1;
constexpr uint64_t kCapSysPtraceBit = uint64_t{1} << 19;
constexpr uint64_t kCapDacReadSearchBit = uint64_t{1} << 2;

TEST(PeerAccessTest, OrdinaryProcessIsControlledByItsUserAndRoot) {
  Credentials t = plain(1000, 1000);
  EXPECT_TRUE(may_control(peer(1000, 1000), t, 7).allowed);
  EXPECT_TRUE(may_control(root_peer(kAllCaps), t, 7).allowed);
  auto other = may_control(peer(1001, 1001), t, 7);
  EXPECT_FALSE(other.allowed);
  EXPECT_NE(other.reason.find("uid 1001 may not control process 7 (owned by uid 1000)"), std::string::npos) << other.reason;
  auto group = may_control(peer(1000, 1001), t, 7);
  EXPECT_FALSE(group.allowed);
  EXPECT_NE(group.reason.find("gid 1001"), std::string::npos) << group.reason;
}

TEST(PeerAccessTest, SetuidProgramThatKeptSavedRootIsRootsOnly) {
  // setresuid(ruid, ruid, 0) in a setuid-root program: it can become root again at will.
  Credentials t = plain(1000, 1000);
  t.suid = 0;
  t.cap_permitted = kAllCaps;  // saved uid 0 keeps the permitted set
  auto user = may_control(peer(1000, 1000), t, 7);
  EXPECT_FALSE(user.allowed);
  EXPECT_NE(user.reason.find("saved uid 0"), std::string::npos) << user.reason;
  EXPECT_NE(user.reason.find("only root"), std::string::npos) << user.reason;
  EXPECT_TRUE(may_control(root_peer(kAllCaps), t, 7).allowed);
  // Effective uid 0 (a setuid program that did not drop), a setgid program, a thread apart.
  Credentials e = plain(1000, 1000);
  e.euid = 0;
  EXPECT_FALSE(may_control(peer(1000, 1000), e, 7).allowed);
  EXPECT_FALSE(may_control(peer(0, 0), e, 7).allowed) << "root without known CAP_SYS_PTRACE is not enough";
  Credentials g = plain(1000, 1000);
  g.egid = g.sgid = 42;
  EXPECT_FALSE(may_control(peer(1000, 1000), g, 7).allowed);
  EXPECT_FALSE(may_control(peer(1000, 42), g, 7).allowed);
  Credentials mixed = plain(1000, 1000);
  mixed.uniform = false;
  EXPECT_FALSE(may_control(peer(1000, 1000), mixed, 7).allowed);
}

TEST(PeerAccessTest, FileCapabilitiesAndNotDumpableAreRootsOnly) {
  Credentials t = plain(1000, 1000);
  t.cap_permitted = t.cap_effective = kCapDacReadSearchBit;  // setcap cap_dac_read_search+ep
  t.dumpable = false;                                        // the kernel marks such an exec so
  auto user = may_control(peer(1000, 1000), t, 7);
  EXPECT_FALSE(user.allowed);
  EXPECT_NE(user.reason.find("capabilities"), std::string::npos) << user.reason;
  EXPECT_TRUE(may_control(root_peer(kAllCaps), t, 7).allowed);
  // A peer of that uid whose capabilities are known to cover the target's still needs the
  // target to be dumpable.
  PeerCredentials same_caps = peer(1000, 1000);
  same_caps.caps_known = true;
  same_caps.cap_permitted = kCapDacReadSearchBit;
  EXPECT_FALSE(may_control(same_caps, t, 7).allowed);
  t.dumpable = true;
  EXPECT_TRUE(may_control(same_caps, t, 7).allowed);
  Credentials nd = plain(1000, 1000);
  nd.dumpable = false;
  auto r = may_control(peer(1000, 1000), nd, 7);
  EXPECT_FALSE(r.allowed);
  EXPECT_NE(r.reason.find("not dumpable"), std::string::npos) << r.reason;
}

TEST(PeerAccessTest, RootNeedsCapSysPtraceOrCapabilitiesCoveringTheTargets) {
  Credentials root = plain(0, 0);
  root.cap_permitted = root.cap_effective = kAllCaps;
  EXPECT_TRUE(may_control(root_peer(kAllCaps), root, 7).allowed);
  EXPECT_TRUE(may_control(root_peer(kCapSysPtraceBit), root, 7).allowed);
  // Root without CAP_SYS_PTRACE (a capability-dropped container root) may not control a
  // process holding capabilities it lacks, as the kernel would not let it ptrace it.
  auto dropped = may_control(root_peer(kCapDacReadSearchBit), root, 7);
  EXPECT_FALSE(dropped.allowed);
  // ... but may control a root process with no more capabilities than itself.
  Credentials weak_root = plain(0, 0);
  weak_root.cap_permitted = kCapDacReadSearchBit;
  EXPECT_TRUE(may_control(root_peer(kCapDacReadSearchBit), weak_root, 7).allowed);
  // Capabilities that could not be read count as none, and the message says why.
  PeerCredentials unknown = peer(0, 0);
  unknown.caps_unknown_reason = "it is not visible in this pid namespace";
  auto u = may_control(unknown, root, 7);
  EXPECT_FALSE(u.allowed);
  EXPECT_NE(u.reason.find("not visible"), std::string::npos) << u.reason;
  EXPECT_FALSE(may_control(unknown, plain(1000, 1000), 7).allowed);
}

TEST(PeerAccessTest, SocketDirectoryOfAPrivilegedProcessIsThePrivilegedUids) {
  EXPECT_EQ(socket_uid(1000, 1000, 1000), 1000u);
  EXPECT_EQ(socket_uid(1000, 1000, 0), 0u);
  EXPECT_EQ(socket_uid(1000, 0, 0), 0u);
  EXPECT_EQ(socket_uid(0, 1000, 1000), 0u);
  EXPECT_EQ(socket_uid(1000, 5, 5), 5u);
  EXPECT_EQ(socket_uid(1000, 1000, 5), 5u);
}

TEST(PeerAccessTest, OwnCredentialsAreThisProcesss) {
  Credentials c = own_credentials();
  EXPECT_EQ(c.ruid, ::getuid());
  EXPECT_EQ(c.egid, ::getegid());
  EXPECT_TRUE(c.uniform);
  if (::geteuid() == 0) {
    EXPECT_NE(c.cap_effective & kCapSysPtraceBit, 0u);
  }
}

}  // namespace
