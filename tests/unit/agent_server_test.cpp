// liblivegraft-agent.so in real processes: preloaded into `sleep`, dlopen'ed into a small host
// compiled at test time, loaded twice, forked; the control socket's peer-credential check.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sched.h>
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

json request(int fd, json req) {
  if (req.is_object() && !req.contains("v")) req["v"] = lg::protocol::kVersion;
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
  EXPECT_EQ(hello["protocol"], lg::protocol::kVersion);
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

// The single-instance lock used to be the abstract socket name
// "@livegraft-agent-<pid-namespace inode>-<pid>": anyone could bind it first for a victim's pid,
// and that process could never get an agent. The lock now lives inside the process.
TEST_F(ServerTest, ForgedInstanceLockOfAnotherUserCannotBlockTheAgent) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to act as another uid";
  int go[2], bound[2];
  ASSERT_EQ(::pipe(go), 0);
  ASSERT_EQ(::pipe(bound), 0);
  pid_t target = ::fork();
  if (target == 0) {  // waits until the squatter holds the name, then becomes sleep + agent
    char c;
    if (::read(go[0], &c, 1) != 1) ::_exit(3);
    ::setenv("LD_PRELOAD", kAgentSo.c_str(), 1);
    ::execl("/bin/sleep", "sleep", "60", nullptr);
    ::_exit(127);
  }
  struct stat ns{};
  ASSERT_EQ(::stat(fmt::format("/proc/{}/ns/pid", target).c_str(), &ns), 0);
  pid_t squatter = ::fork();
  if (squatter == 0) {  // nobody binds the old lock name for the target's pid and holds it
    if (::setgid(kNobody) != 0 || ::setuid(kNobody) != 0) ::_exit(3);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    int n = std::snprintf(addr.sun_path + 1, sizeof addr.sun_path - 1, "livegraft-agent-%llu-%d",
                          static_cast<unsigned long long>(ns.st_ino), static_cast<int>(target));
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    char ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + n)) == 0 ? 'y' : 'n';
    (void)!::write(bound[1], &ok, 1);
    ::pause();
    ::_exit(0);
  }
  char ok = 0;
  ASSERT_EQ(::read(bound[0], &ok, 1), 1);
  ASSERT_EQ(ok, 'y') << "the squatter could not bind the name";
  ASSERT_EQ(::write(go[1], "g", 1), 1);
  int fd = -1;
  for (int i = 0; i < 2000 && fd < 0; ++i) {
    fd = connect_to(socket_path(::getuid(), target));
    if (fd < 0) ::usleep(10000);
  }
  EXPECT_GE(fd, 0) << "the agent did not come up while another user held the old lock name";
  if (fd >= 0) {
    EXPECT_EQ(request(fd, {{"op", "hello"}})["pid"], target);
    ::close(fd);
  }
  EXPECT_EQ(count_agent_threads(target), 1);
  std::ifstream maps(fmt::format("/proc/{}/maps", target));
  std::string text((std::istreambuf_iterator<char>(maps)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("/memfd:livegraft-agent-lock"), std::string::npos) << "the lock is a named page inside the process";
  ::kill(squatter, SIGKILL);
  ::kill(target, SIGKILL);
  ::waitpid(squatter, nullptr, 0);
  ::waitpid(target, nullptr, 0);
  ::unlink(socket_path(::getuid(), target).c_str());
  for (int f : {go[0], go[1], bound[0], bound[1]}) ::close(f);
}

// A socket file bound at [path]; listening (fd returned, the caller closes it) or left stale.
int make_socket_file(const std::string& path, bool listening) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  if (listening && ::listen(fd, 4) == 0) return fd;
  ::close(fd);
  return listening ? -1 : 0;
}

bool exists(const std::string& path) {
  struct stat st{};
  return ::lstat(path.c_str(), &st) == 0;
}

// 289 agent-*.sock files of dead processes after an afternoon of tests: an agent now removes
// the stale ones of its directory when it starts, and never one a live agent serves — here one
// in another pid namespace (it is pid 1 there) sharing /tmp.
TEST_F(ServerTest, AgentRemovesStaleSocketsAtStartButNotLiveOnes) {
  std::string dir = socket_dir(::getuid());
  ASSERT_TRUE(prepare_socket_dir(dir, ::getuid()));
  long pid_max = 4194304;
  std::ifstream("/proc/sys/kernel/pid_max") >> pid_max;
  // Names no process of ours can have: above pid_max.
  std::string stale = fmt::format("{}/agent-{}.sock", dir, pid_max + 1000 + ::getpid());
  std::string live = fmt::format("{}/agent-{}.sock", dir, pid_max + 2000 + ::getpid());
  std::string not_socket = fmt::format("{}/agent-{}.sock", dir, pid_max + 3000 + ::getpid());
  ASSERT_EQ(make_socket_file(stale, false), 0);
  int live_fd = make_socket_file(live, true);
  ASSERT_GE(live_fd, 0);
  { std::ofstream(not_socket) << "not a socket\n"; }

  // An agent in a new pid namespace: pid 1 there, agent-1.sock in the same directory.
  pid_t outer = -1, inner_pid = -1;
  std::string ns_socket = dir + "/agent-1.sock";
  bool ns_agent = false;
  if (::geteuid() == 0 && !exists(ns_socket)) {
    int ready[2];
    ASSERT_EQ(::pipe(ready), 0);
    outer = ::fork();
    if (outer == 0) {
      if (::unshare(CLONE_NEWPID) != 0) ::_exit(3);
      pid_t inner = ::fork();
      if (inner == 0) {
        ::setenv("LD_PRELOAD", kAgentSo.c_str(), 1);
        ::execl("/bin/sleep", "sleep", "60", nullptr);
        ::_exit(127);
      }
      (void)!::write(ready[1], &inner, sizeof inner);  // its pid in our namespace
      ::waitpid(inner, nullptr, 0);
      ::_exit(0);
    }
    ::close(ready[1]);
    if (::read(ready[0], &inner_pid, sizeof inner_pid) != sizeof inner_pid) inner_pid = -1;
    ::close(ready[0]);
    for (int i = 0; i < 2000 && inner_pid > 0; ++i) {
      int c = connect_to(ns_socket);
      if ((ns_agent = c >= 0)) {
        ::close(c);
        break;
      }
      ::usleep(10000);
    }
  }

  Child child({"/bin/sleep", "60"}, kAgentSo);
  int fd = child.connect_agent();
  ASSERT_GE(fd, 0);
  ::close(fd);
  EXPECT_FALSE(exists(stale)) << "a socket nobody listens on is stale";
  EXPECT_TRUE(exists(live)) << "a socket someone listens on is not";
  EXPECT_TRUE(exists(not_socket)) << "only sockets are removed";
  if (outer > 0) {
    EXPECT_TRUE(ns_agent) << "the agent in the new pid namespace did not come up at " << ns_socket;
  }
  if (ns_agent) {
    EXPECT_TRUE(exists(ns_socket)) << "the agent of another pid namespace lost its socket";
    int c = connect_to(ns_socket);
    EXPECT_GE(c, 0);
    if (c >= 0) ::close(c);
  }
  if (inner_pid > 0) ::kill(inner_pid, SIGKILL);
  if (outer > 0) {
    ::waitpid(outer, nullptr, 0);
    ::unlink(ns_socket.c_str());  // SIGKILL left it behind
  }
  ::close(live_fd);
  ::unlink(live.c_str());
  ::unlink(not_socket.c_str());
}

TEST_F(ServerTest, DlopenedAgentServesAndForkedChildServesUnderItsOwnPid) {
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
  // The child serves again (docs/agent.md, start-up step 5), under its own pid, on its own
  // socket (opened 20 ms after the fork).
  int cfd = -1;
  for (int i = 0; i < 500 && cfd < 0; ++i) {
    cfd = connect_to(socket_path(::getuid(), grandchild));
    if (cfd < 0) ::usleep(10000);
  }
  ASSERT_GE(cfd, 0) << "the forked child's agent did not come up";
  EXPECT_EQ(request(cfd, {{"op", "hello"}})["pid"], grandchild);
  ::close(cfd);
  EXPECT_EQ(count_agent_threads(grandchild), 1);
  ::kill(grandchild, SIGKILL);
  // The parent still serves after its child went away.
  fd = connect_to(child.socket());
  ASSERT_GE(fd, 0);
  EXPECT_EQ(request(fd, {{"op", "status"}})["ok"], true);
  ::close(fd);
}

TEST(StaleSocketTest, OnlyAgentSocketsNobodyListensOnAreRemoved) {
  TempDir dir;
  std::string d = dir.path();
  ASSERT_EQ(make_socket_file(d + "/agent-111.sock", false), 0);
  int live = make_socket_file(d + "/agent-222.sock", true);
  ASSERT_GE(live, 0);
  { std::ofstream(d + "/agent-333.sock") << "x"; }
  ASSERT_EQ(make_socket_file(d + "/other.sock", false), 0);
  ASSERT_EQ(make_socket_file(d + "/agent-444.sock.new", false), 0);
  ASSERT_EQ(make_socket_file(d + "/agent-555.sock", false), 0);
  EXPECT_EQ(remove_stale_sockets(d, d + "/agent-555.sock"), 1);
  EXPECT_FALSE(exists(d + "/agent-111.sock"));
  EXPECT_TRUE(exists(d + "/agent-222.sock"));
  EXPECT_TRUE(exists(d + "/agent-333.sock"));
  EXPECT_TRUE(exists(d + "/other.sock"));
  EXPECT_TRUE(exists(d + "/agent-444.sock.new")) << "a socket being set up is not touched";
  EXPECT_TRUE(exists(d + "/agent-555.sock")) << "our own name is listen_on's business";
  // listen_on replaces its own stale name but never a live one.
  auto mine = listen_on(d + "/agent-555.sock");
  ASSERT_TRUE(mine) << mine.error().describe();
  auto taken = listen_on(d + "/agent-222.sock");
  ASSERT_FALSE(taken);
  EXPECT_EQ(taken.error().kind, ErrorKind::busy);
  EXPECT_TRUE(exists(d + "/agent-222.sock"));
  ::close(live);
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
