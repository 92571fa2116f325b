// Who may control an agent: exactly those the kernel would let ptrace the process. Root injects
// the agent into targets an unprivileged user started — a setuid-root program that kept saved
// uid 0, a program with file capabilities, an ordinary program — and the user may control only
// the ordinary one (the exploit: connect to the agent of the setuid program and `load` an object
// whose constructor calls setresuid(0, 0, 0)).
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/fsuid.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "common/scope_guard.h"
#include "harness.h"

namespace lg::e2e {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr const char* kTestUser = "lgpriv";

struct User {
  uid_t uid = 0;
  gid_t gid = 0;
};

// The unprivileged test user, created when missing (useradd may find /etc/passwd locked by a
// concurrent useradd: retried).
std::optional<User> test_user() {
  for (int attempt = 0; attempt < 20; ++attempt) {
    if (passwd* pw = ::getpwnam(kTestUser)) return User{pw->pw_uid, pw->pw_gid};
    std::string cmd = std::string("useradd --system --no-create-home --shell /usr/sbin/nologin ") + kTestUser + " >/dev/null 2>&1";
    if (std::system(cmd.c_str()) != 0) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return std::nullopt;
}

// Drops every root credential of this (forked) process to [u]'s.
bool become(const User& u) {
  return ::setgroups(0, nullptr) == 0 && ::setresgid(u.gid, u.gid, u.gid) == 0 && ::setresuid(u.uid, u.uid, u.uid) == 0;
}

// A target program started as [user], line-oriented like the harness's Target.
class UserTarget {
 public:
  UserTarget(const User& user, const std::string& path, std::vector<std::string> args = {}) {
    int in[2], out[2];
    if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(in[0], 0);
      ::dup2(out[1], 1);
      if (!become(user)) ::_exit(126);
      std::vector<char*> argv{const_cast<char*>(path.c_str())};
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(path.c_str(), argv.data());
      ::_exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    in_ = in[1];
    out_ = out[0];
    EXPECT_EQ(read_line(), "ready") << path << " did not start";
  }
  ~UserTarget() {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    ::close(in_);
    ::close(out_);
  }
  pid_t pid() const { return pid_; }
  std::string ask(const std::string& line) {
    std::string l = line + "\n";
    if (::write(in_, l.data(), l.size()) != static_cast<ssize_t>(l.size())) return "";
    return read_line();
  }
  std::string read_line() {
    std::string s;
    char c;
    for (;;) {
      pollfd p{out_, POLLIN, 0};
      if (::poll(&p, 1, 20000) <= 0 || ::read(out_, &c, 1) != 1) return s;
      if (c == '\n') return s;
      s += c;
    }
  }

 private:
  pid_t pid_ = -1;
  int in_ = -1, out_ = -1;
};

// `livegraft ARGS` run as [user] (all ids, no supplementary groups).
CliRun livegraft_as(const User& user, const std::vector<std::string>& args) {
  int out[2], err[2];
  if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
  std::string exe = livegraft_path();
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    if (!become(user)) ::_exit(126);
    std::vector<std::string> copy = args;
    std::vector<char*> argv{exe.data()};
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(exe.c_str(), argv.data());
    ::_exit(127);
  }
  ::close(out[1]);
  ::close(err[1]);
  CliRun run;
  for (auto [fd, s] : {std::pair{out[0], &run.out}, std::pair{err[0], &run.err}}) {
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) s->append(buf, static_cast<size_t>(n));
    ::close(fd);
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  run.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  run.json = json::parse(run.out, nullptr, false);
  if (run.json.is_discarded()) run.json = nullptr;
  return run;
}

std::string sock_path(uid_t uid, pid_t pid) {
  return "/tmp/livegraft-" + std::to_string(uid) + "/agent-" + std::to_string(pid) + ".sock";
}

// The socket the agent of [pid] serves, in whichever /tmp/livegraft-<uid> directory it is.
std::string served_socket(pid_t pid, const User& user) {
  for (uid_t uid : {uid_t{0}, user.uid}) {
    std::string p = sock_path(uid, pid);
    struct stat st{};
    if (::lstat(p.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) return p;
  }
  return "";
}

// Connects to [path] as [user] and sends a `load`: the first line the agent answers. With
// [reach_as_root] only the effective ids are the user's (the filesystem uid stays 0, so the
// socket's directory does not keep it out): only the agent's own check on SO_PEERCRED (which
// reports the effective ids) can refuse it.
json load_as(const User& user, const std::string& path, bool reach_as_root) {
  int pipefd[2];
  if (::pipe(pipefd) != 0) return json();
  pid_t p = ::fork();
  if (p == 0) {
    ::close(pipefd[0]);
    if (reach_as_root) {
      if (::setgroups(0, nullptr) != 0 || ::setresgid(static_cast<gid_t>(-1), user.gid, static_cast<gid_t>(-1)) != 0 ||
          ::setresuid(static_cast<uid_t>(-1), user.uid, static_cast<uid_t>(-1)) != 0)
        ::_exit(3);
      ::setfsuid(0);
    } else if (!become(user)) {
      ::_exit(3);
    }
    int c = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    std::string answer;
    if (::connect(c, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      answer = json{{"connect_errno", errno}}.dump();
    } else {
      std::string req = json{{"op", "load"}, {"path", "/tmp/escalate.o"}, {"object", {{"name", ""}, {"lo", 0}, {"hi", 1}}}, {"funcs", json::array()}}.dump() + "\n";
      (void)!::send(c, req.data(), req.size(), MSG_NOSIGNAL);
      char ch;
      while (::read(c, &ch, 1) == 1 && ch != '\n') answer += ch;
    }
    (void)!::write(pipefd[1], answer.data(), answer.size());
    ::_exit(0);
  }
  ::close(pipefd[1]);
  std::string answer;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(pipefd[0], buf, sizeof buf)) > 0) answer.append(buf, static_cast<size_t>(n));
  ::close(pipefd[0]);
  int st = 0;
  ::waitpid(p, &st, 0);
  json j = json::parse(answer, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return json{{"unreadable", answer}, {"exit", WIFEXITED(st) ? WEXITSTATUS(st) : -1}};
  return j;
}

class Privilege : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root: it creates a user, installs a setuid-root program and sets file capabilities";
    auto u = test_user();
    if (!u) GTEST_SKIP() << "could not create the test user " << kTestUser << " (useradd failed)";
    user_ = *u;
    char tmpl[] = "/tmp/livegraft-privtest-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ASSERT_EQ(::chmod(dir_.c_str(), 0755), 0);
  }
  void TearDown() override {
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }
  // A copy of a target program in our directory, owned by root, with [mode].
  std::string install(const std::string& name, mode_t mode) {
    std::string to = dir_ + "/" + name + "-" + std::to_string(++copies_);
    fs::copy_file(target_path(name), to);
    EXPECT_EQ(::chown(to.c_str(), 0, 0), 0);
    EXPECT_EQ(::chmod(to.c_str(), mode), 0);
    return to;
  }
  void inject_as_root(pid_t pid) {
    CliRun r = livegraft({"--json", "inject", std::to_string(pid)});
    ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
    CliRun s = livegraft({"--json", "status", std::to_string(pid)});
    ASSERT_EQ(s.exit_code, 0) << "root must still control it: " << s.err;
    EXPECT_EQ(s.json["agent"], true);
  }

  User user_;
  std::string dir_;
  int copies_ = 0;
};

TEST_F(Privilege, SetuidProgramThatKeptSavedRootIsNotItsUsersToControl) {
  std::string exe = install("privileged", 04755);
  UserTarget t(user_, exe, {"keep-saved-root"});
  ASSERT_EQ(t.ask("i"), std::to_string(user_.uid) + " " + std::to_string(user_.uid) + " 0") << "setresuid(ruid, ruid, 0) did not happen";
  inject_as_root(t.pid());

  // The user's controller is refused.
  CliRun status = livegraft_as(user_, {"status", std::to_string(t.pid())});
  EXPECT_NE(status.exit_code, 0) << status.out;
  EXPECT_NE(status.err.find("ermission"), std::string::npos) << status.err;
  EXPECT_NE(status.err.find("only root may control"), std::string::npos) << status.err;
  // The agent serves from root's directory, which the user can neither enter nor change.
  std::string sock = served_socket(t.pid(), user_);
  ASSERT_FALSE(sock.empty()) << "no agent socket for " << t.pid();
  EXPECT_EQ(sock, sock_path(0, t.pid()));
  json direct = load_as(user_, sock, false);
  EXPECT_TRUE(direct.contains("connect_errno")) << "the user reached root's socket directory: " << direct.dump();
  // Even a peer that reaches the socket (filesystem uid 0, effective uid the user's) is refused
  // by the agent before it reads the `load`.
  json reached = load_as(user_, sock, true);
  EXPECT_EQ(reached["ok"], false) << reached.dump();
  EXPECT_EQ(reached["kind"], "permission") << reached.dump();
  EXPECT_NE(reached.value("error", "").find("saved uid 0"), std::string::npos) << reached.dump();
  EXPECT_EQ(t.ask("i"), std::to_string(user_.uid) + " " + std::to_string(user_.uid) + " 0") << "the target must be unchanged";
}

TEST_F(Privilege, ProgramWithFileCapabilitiesIsNotItsUsersToControl) {
  std::string exe = install("privileged", 0755);
  std::string cmd = "setcap cap_dac_read_search+ep " + exe + " 2>&1";
  if (std::system(cmd.c_str()) != 0) GTEST_SKIP() << "setcap failed (install libcap2-bin; the file system must support security xattrs)";
  UserTarget t(user_, exe);
  ASSERT_EQ(t.ask("r /etc/shadow"), "readable") << "the file capability is not in effect";
  inject_as_root(t.pid());

  // Its socket is in the user's own directory (no uid to serve from), so the user reaches it:
  // the agent itself refuses, with the reason.
  EXPECT_EQ(served_socket(t.pid(), user_), sock_path(user_.uid, t.pid()));
  CliRun status = livegraft_as(user_, {"status", std::to_string(t.pid())});
  EXPECT_NE(status.exit_code, 0) << status.out;
  EXPECT_NE(status.err.find("capabilities"), std::string::npos) << status.err;
  json direct = load_as(user_, served_socket(t.pid(), user_), false);
  EXPECT_EQ(direct["ok"], false) << direct.dump();
  EXPECT_EQ(direct["kind"], "permission") << direct.dump();
}

// A daemon started by root that dropped to a user but kept saved uid 0 (squid does, and makes
// itself dumpable again): the agent takes euid 0 on one thread to create its socket, which
// makes the kernel clear the dumpable flag; /proc/PID/mem then belonged to root and the agent,
// running as the user, could not open its own memory ("open /proc/self/mem: Permission
// denied" at the first apply). The agent now gives the flag back with the euid.
TEST_F(Privilege, DaemonThatKeptSavedRootStaysDumpableAfterTheInjection) {
  Target t(target_path("privileged"), {"daemon-drop", std::to_string(user_.uid)});
  ASSERT_EQ(t.ask("i"), std::to_string(user_.uid) + " " + std::to_string(user_.uid) + " 0");
  const std::string mem = "/proc/" + std::to_string(t.pid()) + "/mem";
  struct stat before {};
  ASSERT_EQ(::stat(mem.c_str(), &before), 0);
  ASSERT_EQ(before.st_uid, user_.uid) << "the daemon is not dumpable to begin with";
  ASSERT_EQ(livegraft({"inject", std::to_string(t.pid())}).exit_code, 0);
  struct stat after {};
  ASSERT_EQ(::stat(mem.c_str(), &after), 0);
  EXPECT_EQ(after.st_uid, user_.uid) << "the injection made the process non-dumpable";
  CliRun status = livegraft({"--json", "status", std::to_string(t.pid())});
  ASSERT_EQ(status.exit_code, 0) << status.err;
  EXPECT_TRUE(status.json["disabled"].is_null()) << status.out;
}

TEST_F(Privilege, OrdinaryProgramStaysItsUsersToControl) {
  std::string exe = install("calc", 0755);
  UserTarget t(user_, exe);
  ASSERT_EQ(t.ask("c 5"), "51");
  inject_as_root(t.pid());
  CliRun status = livegraft_as(user_, {"--json", "status", std::to_string(t.pid())});
  ASSERT_EQ(status.exit_code, 0) << status.err;
  EXPECT_EQ(status.json["agent"], true);
  CliRun apply = livegraft_as(user_, {"--json", "apply", std::to_string(t.pid()), patch_path("calc_fix")});
  ASSERT_EQ(apply.exit_code, 0) << apply.err;
  EXPECT_EQ(t.ask("c 5"), "52");
  CliRun revert = livegraft_as(user_, {"revert", std::to_string(t.pid()), "calc-fix"});
  EXPECT_EQ(revert.exit_code, 0) << revert.err;
  EXPECT_EQ(t.ask("c 5"), "51");
}

// Local denial of service: any user can create /tmp/livegraft-<uid> first, owned by them. The
// agent passes over a directory it cannot trust and listens in the next of
// protocol::socket_dirs() (for a user: /run/user/<uid>/livegraft, created here as a login
// manager would), and the controller finds it there.
TEST_F(Privilege, SocketDirectoryCreatedFirstByAnotherUserDoesNotKeepTheProcessFromBeingPatched) {
  const std::string taken = "/tmp/livegraft-" + std::to_string(user_.uid);
  const std::string runtime = "/run/user/" + std::to_string(user_.uid);
  std::string kept = taken + ".kept-by-test-" + std::to_string(::getpid());
  bool had_dir = fs::exists(taken);
  if (had_dir) {
    ASSERT_EQ(::rename(taken.c_str(), kept.c_str()), 0);
  }
  bool had_runtime = fs::exists(runtime);
  ASSERT_EQ(::mkdir(taken.c_str(), 0700), 0);
  ASSERT_EQ(::chown(taken.c_str(), 65534, 65534), 0);  // "nobody" got there first
  if (!had_runtime) {
    fs::create_directories("/run/user");
    ASSERT_EQ(::mkdir(runtime.c_str(), 0700), 0);
    ASSERT_EQ(::chown(runtime.c_str(), user_.uid, user_.gid), 0);
  }
  std::string exe = install("calc", 0755);
  {
    UserTarget t(user_, exe);
    ASSERT_EQ(t.ask("c 5"), "51");
    const std::string pid = std::to_string(t.pid());
    CliRun apply = livegraft_as(user_, {"--json", "apply", pid, patch_path("calc_fix")});
    EXPECT_EQ(apply.exit_code, 0) << apply.err;
    EXPECT_EQ(t.ask("c 5"), "52");
    struct stat st {};
    EXPECT_EQ(::lstat((runtime + "/livegraft/agent-" + pid + ".sock").c_str(), &st), 0) << "the agent does not serve from " << runtime;
    EXPECT_NE(::lstat((taken + "/agent-" + pid + ".sock").c_str(), &st), 0) << "the agent used the other user's directory";
    CliRun status = livegraft_as(user_, {"--json", "status", pid});
    EXPECT_EQ(status.exit_code, 0) << status.err;
    CliRun revert = livegraft_as(user_, {"revert", pid, "calc-fix"});
    EXPECT_EQ(revert.exit_code, 0) << revert.err;
    EXPECT_EQ(t.ask("c 5"), "51");
  }
  std::error_code ec;
  fs::remove_all(taken, ec);
  if (had_dir) ::rename(kept.c_str(), taken.c_str());
  if (!had_runtime) fs::remove_all(runtime, ec);
}

// The same denial of service for a user with no login session (no /run/user/<uid>): no directory
// is left that the agent could serve from. The user's controller says so, and what to do, before
// injecting anything; a controller run as root creates /run/livegraft/<uid> (only root can) for
// that uid, the agent serves from it, and the user controls the process from then on.
TEST_F(Privilege, SocketDirectoryCreatedFirstForAUserWithoutLoginSessionIsExplainedAndRootMakesOne) {
  const std::string uid = std::to_string(user_.uid);
  const std::string taken = "/tmp/livegraft-" + uid;
  const std::string runtime = "/run/user/" + uid;
  const std::string made = "/run/livegraft/" + uid;
  if (fs::exists(runtime)) GTEST_SKIP() << runtime << " exists (a login session of " << kTestUser << "?): not removing it";
  std::string kept = taken + ".kept-by-test-" + std::to_string(::getpid());
  bool had_dir = fs::exists(taken);
  if (had_dir) {
    ASSERT_EQ(::rename(taken.c_str(), kept.c_str()), 0);
  }
  bool had_run_dir = fs::exists("/run/livegraft");
  std::error_code ec;
  fs::remove_all(made, ec);  // left by an earlier run: the test needs it absent
  // Everything put back on every path (an ASSERT returns early).
  ScopeGuard restore([&] {
    std::error_code e;
    fs::remove_all(taken, e);
    fs::remove_all(made, e);
    if (!had_run_dir) ::rmdir("/run/livegraft");
    if (had_dir) ::rename(kept.c_str(), taken.c_str());
  });
  ASSERT_EQ(::mkdir(taken.c_str(), 0700), 0);
  ASSERT_EQ(::chown(taken.c_str(), 65534, 65534), 0);  // "nobody" got there first
  std::string exe = install("calc", 0755);
  {
    UserTarget t(user_, exe);
    ASSERT_EQ(t.ask("c 5"), "51");
    const std::string pid = std::to_string(t.pid());
    CliRun refused = livegraft_as(user_, {"apply", pid, patch_path("calc_fix")});
    EXPECT_NE(refused.exit_code, 0);
    for (const std::string& part : std::vector<std::string>{taken + " is owned by uid 65534", runtime + " does not exist (uid " + uid + " has no login session)",
                                    made + " does not exist (only root can create it)", "not injected", "as root"})
      EXPECT_NE(refused.err.find(part), std::string::npos) << "missing \"" << part << "\" in: " << refused.err;
    std::ifstream maps("/proc/" + pid + "/maps");
    std::string mapped((std::istreambuf_iterator<char>(maps)), std::istreambuf_iterator<char>());
    EXPECT_EQ(mapped.find("liblivegraft-agent"), std::string::npos) << "an agent with nowhere to serve was injected";
    CliRun status = livegraft_as(user_, {"status", pid});
    EXPECT_NE(status.exit_code, 0);
    EXPECT_NE(status.err.find("no directory an agent of uid " + uid + " could serve from"), std::string::npos) << status.err;

    CliRun as_root = livegraft({"--json", "apply", pid, patch_path("calc_fix")});
    ASSERT_EQ(as_root.exit_code, 0) << as_root.err;
    EXPECT_EQ(t.ask("c 5"), "52");
    struct stat st {};
    ASSERT_EQ(::lstat(made.c_str(), &st), 0) << "root did not make " << made;
    EXPECT_TRUE(S_ISDIR(st.st_mode));
    EXPECT_EQ(st.st_uid, user_.uid);
    EXPECT_EQ(st.st_mode & 07777, 0700u);
    EXPECT_EQ(::lstat((made + "/agent-" + pid + ".sock").c_str(), &st), 0) << "the agent does not serve from " << made;
    EXPECT_NE(::lstat((taken + "/agent-" + pid + ".sock").c_str(), &st), 0) << "the agent used the other user's directory";
    CliRun mine = livegraft_as(user_, {"--json", "status", pid});
    EXPECT_EQ(mine.exit_code, 0) << mine.err;
    CliRun revert = livegraft_as(user_, {"revert", pid, "calc-fix"});
    EXPECT_EQ(revert.exit_code, 0) << revert.err;
    EXPECT_EQ(t.ask("c 5"), "51");
  }
}

}  // namespace
}  // namespace lg::e2e
