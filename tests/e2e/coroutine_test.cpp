// User-space stack switching (docs/consistency.md, "Stack switching"): coroutines suspended
// inside a patched handler keep their frames on stacks no thread points to. tests/programs/
// coro_pair.c runs two ucontext coroutines that encode, yield and decode inside handle();
// tests/patches/coro_pair_fix.c changes all three, so a request encoded by one version and
// decoded by the other is counted as a mismatch.
#include <gtest/gtest.h>

#include <unistd.h>

#include <sstream>
#include <thread>

#include "harness.h"

namespace lg::e2e {
namespace {

using namespace std::chrono_literals;

std::string agent_preload() { return "LD_PRELOAD=" + binary_dir() + "/liblivegraft-agent.so"; }

// (requests, mismatches) so far.
std::pair<long, long> counts(Target& t) {
  std::istringstream in(t.ask("m"));
  long requests = -1, mismatches = -1;
  in >> requests >> mismatches;
  return {requests, mismatches};
}

// Lets the coroutines handle more requests.
void let_run(Target& t) {
  long before = counts(t).first;
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (counts(t).first < before + 200) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the coroutines stopped handling requests";
    std::this_thread::sleep_for(5ms);
  }
}

class StackSwitching : public ::testing::TestWithParam<std::string> {};

TEST_P(StackSwitching, ProgramUsingSwapcontextWithoutDeclaringIsRefused) {
  Target t(target_path("coro_pair"));
  std::string pid = std::to_string(t.pid());
  CliRun a = livegraft({"--json", "apply", "--model", GetParam(), pid, patch_path("coro_pair_fix")});
  EXPECT_EQ(a.exit_code, 5) << a.err << a.out;
  ASSERT_TRUE(a.json.is_object()) << a.out;
  std::string error = a.json.value("error", "");
  EXPECT_NE(error.find("can switch stacks in user space"), std::string::npos) << a.out;
  EXPECT_NE(error.find("coro_pair imports swapcontext"), std::string::npos) << a.out;
  EXPECT_NE(a.json.value("hint", "").find("livegraft_coroutines_declare"), std::string::npos) << a.out;
  // Refused before the process was touched: no agent injected.
  EXPECT_EQ(t.maps().find("liblivegraft-agent.so"), std::string::npos);
  auto [requests, mismatches] = counts(t);
  EXPECT_GT(requests, 0);
  EXPECT_EQ(mismatches, 0);
}

TEST_P(StackSwitching, DeclaredContextsInsideThePatchedHandlerHoldTheSwitch) {
  Target t(target_path("coro_pair"), {"declare"}, {agent_preload()});
  std::string pid = std::to_string(t.pid());
  // Both coroutines suspended inside handle(), between encode and decode.
  ASSERT_EQ(t.ask("h"), "held");
  CliRun a = livegraft({"--json", "apply", "--model", GetParam(), "--timeout", "0.5", pid, patch_path("coro_pair_fix")});
  EXPECT_EQ(a.exit_code, 5) << a.err << a.out;
  ASSERT_TRUE(a.json.is_object()) << a.out;
  ASSERT_GE(a.json["blockers"].size(), 1u) << a.out;
  EXPECT_NE(a.json["blockers"][0].value("reason", "").find("suspended context"), std::string::npos) << a.out;
  EXPECT_NE(a.json["blockers"][0].value("reason", "").find("handle"), std::string::npos) << a.out;
  CliRun s = livegraft({"--json", "status", pid});
  EXPECT_EQ(s.json["patches"].size(), 0u) << s.out;
  ASSERT_EQ(t.ask("g"), "going");

  // Running: the switch waits for a moment with no coroutine inside the handler, every time.
  for (int round = 0; round < 5; ++round) {
    CliRun ap = livegraft({"--json", "apply", "--model", GetParam(), "--timeout", "30", pid, patch_path("coro_pair_fix")});
    ASSERT_EQ(ap.exit_code, 0) << ap.err << ap.out;
    let_run(t);
    CliRun rv = livegraft({"--json", "revert", "--model", GetParam(), "--timeout", "30", pid, "coro-pair-fix"});
    ASSERT_EQ(rv.exit_code, 0) << rv.err << rv.out;
    let_run(t);
  }
  auto [requests, mismatches] = counts(t);
  EXPECT_GT(requests, 1000);
  EXPECT_EQ(mismatches, 0) << "a request was encoded by one version and decoded by the other";
}

// OpenSSL 3's libcrypto imports makecontext and setcontext (its ASYNC jobs): Debian's own
// memcached, linked with it for TLS, was refused with a hint to change "the program's scheduler".
// The refusal stays (a job could be suspended in patched code), the hint says what is vouched for.
TEST(StackSwitchingOpenSsl, ProcessWithLibcryptoIsRefusedWithAHintAboutItsAsyncJobs) {
  const std::string libcrypto = "/usr/lib/x86_64-linux-gnu/libcrypto.so.3";
  if (access(libcrypto.c_str(), R_OK) != 0) GTEST_SKIP() << libcrypto << " is not installed";
  Target t(target_path("calc"), {}, {"LD_PRELOAD=" + libcrypto});
  ASSERT_NE(t.maps().find("libcrypto.so.3"), std::string::npos);
  std::string pid = std::to_string(t.pid());
  CliRun a = livegraft({"--json", "apply", pid, patch_path("calc_fix")});
  EXPECT_EQ(a.exit_code, 5) << a.err << a.out;
  ASSERT_TRUE(a.json.is_object()) << a.out;
  EXPECT_NE(a.json.value("error", "").find("libcrypto.so.3 imports makecontext"), std::string::npos) << a.out;
  const std::string hint = a.json.value("hint", "");
  EXPECT_NE(hint.find("OpenSSL"), std::string::npos) << a.out;
  EXPECT_NE(hint.find("SSL_MODE_ASYNC"), std::string::npos) << a.out;
  EXPECT_NE(hint.find("--allow-stack-switching"), std::string::npos) << a.out;
  EXPECT_EQ(hint.find("livegraft_coroutines_declare"), std::string::npos) << a.out;  // not for OpenSSL's contexts
  EXPECT_EQ(t.maps().find("liblivegraft-agent.so"), std::string::npos);
  EXPECT_EQ(t.ask("c 5"), "51");
  CliRun b = livegraft({"apply", "--allow-stack-switching", pid, patch_path("calc_fix")});
  ASSERT_EQ(b.exit_code, 0) << b.err << b.out;
  EXPECT_EQ(t.ask("c 5"), "52");
}

INSTANTIATE_TEST_SUITE_P(Models, StackSwitching, ::testing::Values("stop-the-world", "per-thread"),
                         [](const auto& info) { return info.param == "stop-the-world" ? "StopTheWorld" : "PerThread"; });

// What the refusal prevents: with the user's override, a switch while both coroutines are
// suspended inside the old handler makes them decode with the new format.
TEST(StackSwitchingOverride, AllowStackSwitchingAppliesAndTheSuspendedCoroutinesMixVersions) {
  Target t(target_path("coro_pair"));
  std::string pid = std::to_string(t.pid());
  ASSERT_EQ(t.ask("h"), "held");
  CliRun a = livegraft({"apply", "--model", "stop-the-world", "--allow-stack-switching", pid, patch_path("coro_pair_fix")});
  ASSERT_EQ(a.exit_code, 0) << a.err << a.out;
  ASSERT_EQ(t.ask("g"), "going");
  let_run(t);
  EXPECT_EQ(counts(t).second, 2) << "both held coroutines decode with the new format";
}

}  // namespace
}  // namespace lg::e2e
