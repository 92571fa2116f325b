// The agent's text_poke protocol on its own process: a thread that meets the int3 is sent to
// the redirect, SIGTRAPs that are not ours reach the previous handler, and undo restores.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <cstring>
#include <thread>

#include "agent/text_poke.h"
#include "agent/universe.h"
#include "x86/encode.h"

namespace lg::agent {
namespace {

extern "C" __attribute__((noinline, noipa, aligned(16))) int poke_victim(int x) { return x + 1; }
extern "C" __attribute__((noinline, noipa, aligned(16))) int poke_redirect(int x) { return x + 1000; }

std::atomic<int> g_previous_calls{0};
void previous_handler(int) { ++g_previous_calls; }

TEST(TextPoke, SigtrapThatIsNotOursReachesThePreviousHandler) {
  // Installed before ours: the poke above (or this one) chains to it.
  struct sigaction sa {};
  sa.sa_handler = previous_handler;
  sigemptyset(&sa.sa_mask);
  // Our handler was installed by an earlier test in this process, if any: put ours after this.
  struct sigaction cur {};
  sigaction(SIGTRAP, nullptr, &cur);
  if (cur.sa_flags & SA_SIGINFO) GTEST_SKIP() << "the agent's handler is already installed in this process";
  ASSERT_EQ(sigaction(SIGTRAP, &sa, nullptr), 0);
  auto addr = reinterpret_cast<uint64_t>(&poke_victim);
  uint8_t first = *reinterpret_cast<uint8_t*>(addr);
  ASSERT_TRUE(poke_begin(addr, first, reinterpret_cast<uint64_t>(&poke_redirect)).ok());
  ASSERT_TRUE(poke_undo(addr, first).ok());
  raise(SIGTRAP);
  EXPECT_EQ(g_previous_calls.load(), 1);
}

TEST(TextPoke, ThreadMeetingTheInt3GoesToTheRedirectAndUndoRestores) {
  auto* volatile fn = &poke_victim;
  auto addr = reinterpret_cast<uint64_t>(&poke_victim);
  uint8_t first = *reinterpret_cast<uint8_t*>(addr);
  ASSERT_TRUE(poke_begin(addr, first, reinterpret_cast<uint64_t>(&poke_redirect)).ok());
  EXPECT_EQ(*reinterpret_cast<uint8_t*>(addr), x86::kInt3);
  uint64_t before = trap_redirects();
  EXPECT_EQ(fn(1), 1001);  // this thread
  int other = 0;
  std::thread([&] { other = fn(2); }).join();
  EXPECT_EQ(other, 1002);
  EXPECT_EQ(trap_redirects(), before + 2);
  ASSERT_TRUE(poke_undo(addr, first).ok());
  EXPECT_EQ(fn(1), 2);
}

TEST(TextPoke, FinishedJumpIsTakenAndRestoringTheOriginalBytesWorks) {
  auto* volatile fn = &poke_victim;
  auto addr = reinterpret_cast<uint64_t>(&poke_victim);
  uint64_t jump_at = addr + x86::jump_offset(reinterpret_cast<uint8_t*>(addr), 16);
  uint8_t orig[5];
  std::memcpy(orig, reinterpret_cast<void*>(jump_at), 5);
  auto jmp = x86::encode_jmp_rel32(jump_at, reinterpret_cast<uint64_t>(&poke_redirect));
  ASSERT_TRUE(jmp.has_value());
  ASSERT_TRUE(text_poke(jump_at, orig, *jmp, reinterpret_cast<uint64_t>(&poke_redirect)).ok());
  EXPECT_EQ(fn(5), 1005);
  ASSERT_TRUE(text_poke(jump_at, *jmp, orig, reinterpret_cast<uint64_t>(&poke_redirect)).ok());
  EXPECT_EQ(fn(5), 6);
  // Old bytes that are not there: refused, nothing written.
  EXPECT_FALSE(text_poke(jump_at, *jmp, orig, 0).ok());
  EXPECT_EQ(fn(5), 6);
}

TEST(Universe, MarkerIsReachableThroughFsAndNewThreadsTakeTheImageValue) {
  int32_t off = marker_tp_offset();
  EXPECT_LT(off, 0);
  EXPECT_EQ(own_marker(), kNoTransition);
  ASSERT_TRUE(set_newborn_marker(42).ok());
  uint64_t seen = 0;
  std::thread([&] { seen = own_marker(); }).join();
  EXPECT_EQ(seen, 42u);
  ASSERT_TRUE(set_newborn_marker(kNoTransition).ok());
  std::thread([&] { seen = own_marker(); }).join();
  EXPECT_EQ(seen, kNoTransition);
}

}  // namespace
}  // namespace lg::agent
