// Errors that used to abort, hang or mislead: each gets a clear error, the documented exit code,
// exactly one JSON document with --json, and leaves the target as it was.
#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "harness.h"
#include "raw_agent.h"

namespace lg::e2e {
namespace {

namespace fs = std::filesystem;

// A scratch directory removed at the end of the test.
struct TempDir {
  fs::path path = fs::temp_directory_path() / ("lg-cli-errors-" + std::to_string(getpid()));
  TempDir() { fs::create_directories(path); }
  ~TempDir() { fs::remove_all(path); }
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

// A copy of patch [name] with every "<from>\0" in the file replaced by "<to>\0" (same length).
std::string patched_copy(const TempDir& dir, const std::string& name, const std::string& from, const std::string& to) {
  std::string bytes = read_file(patch_path(name));
  std::string f = from + std::string(1, '\0'), t = to + std::string(1, '\0');
  size_t count = 0;
  for (size_t pos = 0; (pos = bytes.find(f, pos)) != std::string::npos; pos += t.size(), ++count)
    bytes.replace(pos, f.size(), t);
  EXPECT_GT(count, 0u) << from << " not found in " << name;
  std::string out = (dir.path / (name + "-edited.o")).string();
  std::ofstream(out, std::ios::binary).write(bytes.data(), static_cast<long>(bytes.size()));
  return out;
}

// The run ended by itself (no signal) and, with --json, printed exactly one JSON object.
void expect_clean_json_error(const CliRun& r, int exit_code, const std::string& kind) {
  EXPECT_EQ(r.exit_code, exit_code) << r.out << r.err;
  ASSERT_TRUE(r.json.is_object()) << "stdout is not one JSON document: '" << r.out << "' stderr: " << r.err;
  EXPECT_EQ(r.json["ok"], false) << r.out;
  EXPECT_EQ(r.json["kind"], kind) << r.out;
  EXPECT_TRUE(r.json["error"].is_string()) << r.out;
}

char state_of(pid_t pid) {
  std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  auto close = stat.rfind(')');
  return close == std::string::npos || close + 2 >= stat.size() ? 0 : stat[close + 2];
}

TEST(CliErrors, NonUtf8RevertNameIsRefusedNotAborted) {
  Target t(target_path("calc"));
  const std::string pid = std::to_string(t.pid());
  CliRun j = livegraft({"--json", "revert", pid, "fix\xff"});
  expect_clean_json_error(j, 2, "invalid_argument");
  CliRun r = livegraft({"revert", pid, "fix\xff"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("fix\\xff"), std::string::npos) << "the bad byte is not shown escaped: " << r.err;
  EXPECT_EQ(t.ask("c 5"), "51");
}

TEST(CliErrors, NonUtf8PatchPathIsRefusedBeforeTouchingTheProcess) {
  Target t(target_path("calc"));
  const std::string pid = std::to_string(t.pid());
  std::string before = t.maps();
  CliRun j = livegraft({"--json", "apply", pid, "/tmp/no-such-\xfe.o"});
  expect_clean_json_error(j, 2, "invalid_argument");
  EXPECT_EQ(t.maps(), before);
  EXPECT_EQ(t.ask("c 5"), "51");
}

TEST(CliErrors, NonUtf8PatchNameIsRefusedBeforeInjecting) {
  TempDir dir;
  Target t(target_path("calc"));
  const std::string pid = std::to_string(t.pid());
  std::string bad = patched_copy(dir, "calc_fix", "calc-fix", "calc-fi\xff");
  std::string before = t.maps();
  CliRun j = livegraft({"--json", "apply", pid, bad});
  expect_clean_json_error(j, 6, "bad_patch");
  CliRun r = livegraft({"apply", pid, bad});
  EXPECT_EQ(r.exit_code, 6) << r.err;
  EXPECT_NE(r.err.find("calc-fi\\xff"), std::string::npos) << r.err;
  EXPECT_EQ(t.maps(), before) << "the agent was injected for a patch that cannot be applied";
  EXPECT_EQ(t.ask("c 5"), "51");
}

TEST(CliErrors, NonUtf8FunctionNameGivesOneJsonDocumentThatSaysItWasReplaced) {
  TempDir dir;
  Target t(target_path("calc"));
  std::string bad = patched_copy(dir, "calc_fix", "compute", "comput\xff");
  std::string before = t.maps();
  CliRun j = livegraft({"--json", "apply", std::to_string(t.pid()), bad});
  EXPECT_LT(j.exit_code, 128) << "livegraft was killed by a signal: " << j.err;
  EXPECT_NE(j.exit_code, 0);
  ASSERT_TRUE(j.json.is_object()) << j.out << j.err;
  EXPECT_EQ(j.json["ok"], false);
  EXPECT_TRUE(j.json["note"].is_string()) << "the replaced bytes are not mentioned: " << j.out;
  EXPECT_EQ(t.maps(), before);
  EXPECT_EQ(t.ask("c 5"), "51");
}

TEST(CliErrors, JsonUsageErrorsPrintOneJsonDocument) {
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"--json", "apply"}, {"--json", "frobnicate"}, {"--json", "status", "notapid"}, {"status", "1", "--json", "--bogus"}}) {
    CliRun r = livegraft(args);
    SCOPED_TRACE(args.back());
    expect_clean_json_error(r, 2, "invalid_argument");
  }
  CliRun text = livegraft({"apply"});
  EXPECT_EQ(text.exit_code, 2);
  EXPECT_TRUE(text.out.empty()) << text.out;
  EXPECT_NE(text.err.find("required"), std::string::npos) << text.err;
}

TEST(CliErrors, TimeoutMustBeFinitePositiveAndBounded) {
  Target t(target_path("calc"));
  const std::string pid = std::to_string(t.pid());
  std::string before = t.maps();
  for (std::string bad : {"nan", "-nan", "inf", "0", "-1", "1e9", "86401", "10s", ""}) {
    CliRun r = livegraft({"apply", "--timeout", bad, pid, patch_path("calc_fix")});
    EXPECT_EQ(r.exit_code, 2) << bad << ": " << r.err;
    EXPECT_NE(r.err.find("--timeout"), std::string::npos) << bad << ": " << r.err;
    EXPECT_EQ(r.err.find("-9223372036854775808"), std::string::npos) << r.err;
  }
  EXPECT_EQ(t.maps(), before);
  CliRun ok = livegraft({"--json", "status", "--timeout", "0.0001", pid});
  EXPECT_EQ(ok.exit_code, 0) << "a tiny timeout is valid (rounded up to 1 ms): " << ok.out << ok.err;
}

TEST(CliErrors, StatusOfAThreadIdNamesItsProcess) {
  Target t(target_path("idle_threads"), {"2"});
  pid_t tid = 0;
  for (const auto& e : fs::directory_iterator("/proc/" + std::to_string(t.pid()) + "/task"))
    if (std::stoi(e.path().filename()) != t.pid()) tid = std::stoi(e.path().filename());
  ASSERT_GT(tid, 0);
  CliRun r = livegraft({"status", std::to_string(tid)});
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  std::string says = "thread " + std::to_string(tid) + " of process " + std::to_string(t.pid());
  EXPECT_NE(r.err.find(says), std::string::npos) << r.err;
  CliRun j = livegraft({"--json", "status", std::to_string(tid)});
  expect_clean_json_error(j, 2, "invalid_argument");
}

TEST(CliErrors, AgentThatIsNotTheAgentIsRefusedBeforeInjecting) {
  Target t(target_path("calc"));
  const std::string pid = std::to_string(t.pid());
  std::string before = t.maps();
  // Not ELF; and an ELF shared object that is not the agent (dlopen would run its constructors).
  for (std::string agent : {"/etc/passwd", "/lib/x86_64-linux-gnu/libm.so.6", "/tmp"}) {
    if (!fs::exists(agent)) continue;
    CliRun r = livegraft({"apply", "--agent", agent, pid, patch_path("calc_fix")});
    EXPECT_EQ(r.exit_code, 2) << agent << ": " << r.err;
    EXPECT_NE(r.err.find("is not the livegraft agent"), std::string::npos) << r.err;
    EXPECT_EQ(t.maps(), before) << agent << " was loaded into the target";
  }
  EXPECT_EQ(t.ask("c 5"), "51");
}

TEST(CliErrors, FifoAsPatchIsRefusedInsteadOfBlocking) {
  TempDir dir;
  Target t(target_path("calc"));
  std::string fifo = (dir.path / "patch.o").string();
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  std::string before = t.maps();
  CliProcess p({"apply", std::to_string(t.pid()), fifo});
  CliRun r = p.finish(std::chrono::seconds(30));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("not a regular file"), std::string::npos) << r.err;
  EXPECT_EQ(t.maps(), before);
}

TEST(CliErrors, StoppedTargetIsRefusedWithoutTouchingIt) {
  Target t(target_path("calc"));
  const std::string pid = std::to_string(t.pid());
  std::string before = t.maps();
  ASSERT_EQ(kill(t.pid(), SIGSTOP), 0);
  for (int i = 0; i < 1000 && state_of(t.pid()) != 'T'; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  ASSERT_EQ(state_of(t.pid()), 'T');
  CliProcess p({"apply", "--timeout", "60", pid, patch_path("calc_fix")});
  CliRun r = p.finish(std::chrono::seconds(30));
  EXPECT_EQ(r.exit_code, 5) << r.err;
  EXPECT_NE(r.err.find("is stopped"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("kill -CONT " + pid), std::string::npos) << r.err;
  EXPECT_EQ(t.maps(), before) << "the agent was injected into a stopped process";
  ASSERT_EQ(kill(t.pid(), SIGCONT), 0);
  EXPECT_EQ(t.ask("c 5"), "51");

  // With an agent: status and revert are refused at once rather than waiting for its answer.
  ASSERT_EQ(livegraft({"apply", pid, patch_path("calc_fix")}).exit_code, 0);
  ASSERT_EQ(kill(t.pid(), SIGSTOP), 0);
  for (int i = 0; i < 1000 && state_of(t.pid()) != 'T'; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  CliRun s = CliProcess({"--json", "status", pid}).finish(std::chrono::seconds(30));
  expect_clean_json_error(s, 5, "busy");
  CliRun v = CliProcess({"revert", pid, "calc-fix"}).finish(std::chrono::seconds(30));
  EXPECT_EQ(v.exit_code, 5) << v.err;
  ASSERT_EQ(kill(t.pid(), SIGCONT), 0);
  EXPECT_EQ(t.ask("c 5"), "52");
}

// Every wait on the agent is bounded by --agent-timeout and the error says so.
TEST(CliErrors, AgentThatDoesNotAnswerTimesOutWithinTheUsersAgentTimeout) {
  FakeAgent fake("");
  ASSERT_TRUE(fake.ready());
  CliRun s = CliProcess({"--json", "status", "--agent-timeout", "0.5", fake.pid()}).finish(std::chrono::seconds(50));
  expect_clean_json_error(s, 5, "timeout");
  EXPECT_NE(s.json.value("error", "").find("did not answer 'status' within 500 ms"), std::string::npos) << s.out;
  EXPECT_NE(s.json.value("hint", "").find("--agent-timeout"), std::string::npos) << s.out;
  CliRun r = CliProcess({"revert", "--agent-timeout", "0.5", fake.pid(), "x"}).finish(std::chrono::seconds(50));
  EXPECT_EQ(r.exit_code, 5) << r.err;
  EXPECT_NE(r.err.find("within 500 ms"), std::string::npos) << r.err;
}

// --timeout bounds the switch only (docs/cli.md): a tiny one, to give up at once on blocked
// threads, must not cut short an agent that takes a while to answer (it did: "the agent of
// process N did not answer 'status' within 1 ms" from `status --timeout 0.001`, and from an
// apply --timeout 0.001 --on-timeout keep on a real agent).
TEST(CliErrors, ShortSwitchTimeoutDoesNotBoundTheAgentsAnswers) {
  FakeAgent fake(protocol::encode(protocol::StatusResponse{}).dump(), std::chrono::milliseconds(100));
  ASSERT_TRUE(fake.ready());
  CliRun s = CliProcess({"--json", "status", "--timeout", "0.001", fake.pid()}).finish(std::chrono::seconds(50));
  EXPECT_EQ(s.exit_code, 0) << s.out << s.err;
  EXPECT_TRUE(s.json.value("agent", false)) << s.out;
  // revert asks for the status first: the patch is not there, and it says so instead of timing out.
  CliRun r = CliProcess({"--json", "revert", "--timeout", "0.001", fake.pid(), "x"}).finish(std::chrono::seconds(50));
  expect_clean_json_error(r, 3, "not_found");
  EXPECT_NE(r.json.value("error", "").find("no patch 'x'"), std::string::npos) << r.out;
  // Its own bound still holds.
  CliRun t = CliProcess({"--json", "status", "--agent-timeout", "0.01", fake.pid()}).finish(std::chrono::seconds(50));
  expect_clean_json_error(t, 5, "timeout");
  EXPECT_NE(t.json.value("error", "").find("within 10 ms"), std::string::npos) << t.out;
}

// The field notes' case: a tiny --timeout to keep a per-thread transition in progress at once,
// on a process without an agent. It used to fail in the agent's waits ("did not answer 'load'
// within 1 ms") or in the injection ("could not inject ... within 1 ms": no thread looked at).
TEST(CliErrors, TinySwitchTimeoutStillInjectsLoadsAndKeepsTheTransition) {
  Target t(target_path("pt_pair"));
  ASSERT_EQ(t.ask("b"), "started");  // a thread inside outer(): the switch cannot finish
  const std::string pid = std::to_string(t.pid());
  CliRun k = livegraft({"--json", "apply", "--model", "per-thread", "--timeout", "0.001", "--on-timeout", "keep", pid,
                        patch_path("pt_pair_fix")});
  EXPECT_EQ(k.exit_code, 5) << k.out << k.err;
  EXPECT_EQ(k.json.value("kind", ""), "unsafe") << k.out;
  EXPECT_NE(k.json.value("error", "").find("stays in progress"), std::string::npos) << k.out;
  CliRun s = livegraft({"--json", "status", "--timeout", "0.001", pid});
  ASSERT_EQ(s.exit_code, 0) << s.out << s.err;
  EXPECT_TRUE(s.json["transition"].is_object()) << s.out;
  CliRun r = livegraft({"--json", "revert", "--model", "per-thread", pid, "pt-pair-fix"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(t.ask("r"), "done 110");
}

// A reply with fields of unexpected types is an agent error, not an uncaught exception.
TEST(CliErrors, MalformedAgentReplyIsAnErrorNotACrash) {
  FakeAgent fake(R"({"ok":true,"v":2,"patches":[{"name":7,"state":[]}],"functions":"none","disabled":null})");
  ASSERT_TRUE(fake.ready());
  CliRun r = livegraft({"--json", "revert", fake.pid(), "x"});
  expect_clean_json_error(r, 7, "agent");
  EXPECT_NE(r.json.value("error", "").find("cannot use"), std::string::npos) << r.out;
  CliRun t = livegraft({"status", fake.pid()});
  EXPECT_LT(t.exit_code, 128) << "killed by a signal: " << t.err;
}

// main() called pthread_exit: the leader is a zombie, the process is not.
TEST(CliErrors, ProcessWhoseMainThreadExitedIsNotAZombie) {
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  pid_t child = fork();
  if (child == 0) {
    pthread_t thread;
    pthread_create(&thread, nullptr, [](void*) -> void* {
      for (;;) pause();
    }, nullptr);
    (void)!write(ready[1], "y", 1);
    // What pthread_exit does to the main thread, without unwinding through the test framework.
    syscall(SYS_exit, 0);
  }
  char c = 0;
  ASSERT_EQ(read(ready[0], &c, 1), 1);
  for (int i = 0; i < 1000 && state_of(child) != 'Z'; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  EXPECT_EQ(state_of(child), 'Z') << "the leader did not exit";
  CliRun r = livegraft({"--json", "status", std::to_string(child)});
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.json["agent"], false) << r.out;
}

TEST(CliErrors, TargetThatDiesMidApplyIsReportedAsDead) {
  Target t(target_path("sleeper"), {"600000"});
  const std::string pid = std::to_string(t.pid());
  ASSERT_EQ(livegraft({"inject", pid}).exit_code, 0);
  ASSERT_EQ(t.ask("b"), "started");
  ASSERT_TRUE(wait_for_thread_in_syscall(t.pid(), {SYS_nanosleep, SYS_clock_nanosleep}));
  CliProcess p({"-v", "--json", "apply", "--timeout", "60", pid, patch_path("sleeper_fix")});
  ASSERT_TRUE(p.wait_for_stderr("waiting:"));  // it is retrying around the sleeping thread
  ASSERT_EQ(kill(t.pid(), SIGKILL), 0);
  CliRun r = p.finish(std::chrono::seconds(60));
  ASSERT_TRUE(r.json.is_object()) << r.out << r.err;
  EXPECT_TRUE((r.json["kind"] == "thread_died" && r.exit_code == 1) || (r.json["kind"] == "not_found" && r.exit_code == 3))
      << r.out;
  // How it died, said by the controller that held it (the kernel reports the leader's exit to
  // its tracer); "not_found" when it was gone before the apply's first look.
  if (r.json["kind"] == "thread_died") {
    EXPECT_NE(r.json.value("error", "").find("process " + pid + " was killed by signal 9 (SIGKILL) during"), std::string::npos)
        << r.out;
  }
}

// The target dies inside the injection (the library's constructor exits it): this used to wait
// out --timeout and report "no thread was at a safe point" (kind unsafe), as if it were busy.
TEST(CliErrors, TargetThatDiesWhileTheAgentIsInjectedIsReportedAsDead) {
  Target t(target_path("calc"));
  const std::string pid = std::to_string(t.pid());
  CliRun r = livegraft({"--json", "apply", "--timeout", "2", "--agent", binary_dir() + "/test-libs/dying_agent.so",
                        pid, patch_path("calc_fix")});
  ASSERT_TRUE(r.json.is_object()) << r.out << r.err;
  EXPECT_EQ(r.json["kind"], "thread_died") << r.out;
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.json.value("error", "").find("process " + pid + " exited with status 3 while"), std::string::npos) << r.out;
  EXPECT_FALSE(t.alive());
}

}  // namespace
}  // namespace lg::e2e
