// Vector state through an entry thunk (src/x86/entry_thunk.h). tests/programs/avx_keeper.c is
// built with -mavx2 and -fipa-ra: sum() keeps a 256-bit value in a ymm register across its call
// to the leaf scale(), which touches no vector register. The fix writes every ymm register in
// full, so the thunk must save them whole (VEX vmovdqu ymm): the thunk of old kept only the low
// 128 bits (movdqu) and sum() came back with an upper half of all ones. The AVX-512 build keeps
// zmm16-31 and a k register live too; its fix clobbers those, and the thunk saves them with EVEX
// and VEX kmov moves. The upper half of a return register cannot be kept: refused. Each test
// skips when this CPU lacks the instructions the target needs.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

#include "harness.h"

namespace lg::e2e {
namespace {

bool cpu_has(const std::string& flag) {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream words(line.substr(line.find(':') + 1));
    std::string w;
    while (words >> w)
      if (w == flag) return true;
    return false;
  }
  return false;
}

uint64_t entry_thunk_of(pid_t pid) {
  CliRun s = livegraft({"--json", "status", std::to_string(pid)});
  EXPECT_EQ(s.exit_code, 0) << s.err;
  if (!s.json.is_object() || s.json["patches"].empty()) return 0;
  return s.json["patches"][0]["funcs"][0].value("entry_thunk", uint64_t{0});
}

// 40N + 64 with the original scale(); the fix adds 2, not 1, in each of the 8 lanes.
void expect_ymm_kept(const std::string& model) {
  if (!cpu_has("avx2")) GTEST_SKIP() << "this CPU has no AVX2: tests/programs/avx_keeper cannot run";
  Target t(target_path("avx_keeper"));
  ASSERT_EQ(t.ask("s 2"), "sum 144");
  CliRun a = livegraft({"apply", "--model", model, std::to_string(t.pid()), patch_path("avx_keeper_fix")});
  ASSERT_EQ(a.exit_code, 0) << a.err << a.out;
  EXPECT_NE(entry_thunk_of(t.pid()), 0u) << "the fix should need an entry thunk";
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(t.ask("s 2"), "sum 152") << "the upper half of sum()'s ymm value did not survive the call";
    EXPECT_EQ(t.ask("s 5"), "sum 272");
  }
  ASSERT_EQ(livegraft({"revert", "--model", model, std::to_string(t.pid()), "avx-keeper-fix"}).exit_code, 0);
  EXPECT_EQ(t.ask("s 2"), "sum 144");
  EXPECT_TRUE(t.alive());
}

TEST(EntryThunkVector, YmmUpperHalfACallerKeepsAcrossALeafSurvivesAReplacementWritingIt) {
  expect_ymm_kept("stop-the-world");
}

TEST(EntryThunkVector, SameUnderThePerThreadModel) { expect_ymm_kept("per-thread"); }

// sum512() of the AVX-512 build keeps zmm values (some in zmm16-31) and a mask in a k register
// across scale(); the fix makes scale() one larger, which adds 1 to each of 16 lanes.
TEST(EntryThunkVector, Zmm16To31AndMaskRegistersACallerKeepsSurviveAReplacementWritingThem) {
  if (!cpu_has("avx512f") || !cpu_has("avx512bw"))
    GTEST_SKIP() << "this CPU has no AVX-512F/BW: tests/programs/avx512_keeper cannot run";
  Target t(target_path("avx512_keeper"));
  std::string before = t.ask("z 3");
  ASSERT_EQ(before.rfind("sum512 ", 0), 0u) << before;
  long expected = std::stol(before.substr(7)) + 16;
  ASSERT_EQ(t.ask("s 2"), "sum 144");
  CliRun a = livegraft({"apply", std::to_string(t.pid()), patch_path("avx512_keeper_fix")});
  ASSERT_EQ(a.exit_code, 0) << a.err << a.out;
  EXPECT_NE(entry_thunk_of(t.pid()), 0u) << "the fix should need an entry thunk";
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(t.ask("z 3"), "sum512 " + std::to_string(expected)) << "zmm or k values did not survive the call";
    EXPECT_EQ(t.ask("s 2"), "sum 152");
  }
  ASSERT_EQ(livegraft({"revert", std::to_string(t.pid()), "avx512-keeper-fix"}).exit_code, 0);
  EXPECT_EQ(t.ask("z 3"), before);
  EXPECT_TRUE(t.alive());
}

// same() returns in xmm0 without writing it, so the upper half of ymm0 survives it; the fix
// writes xmm0 with VEX (zeroing that half). A thunk restoring the half would restore the low half
// too, over the return value: refused, naming the function and the register, nothing changed.
TEST(EntryThunkVector, UpperHalfOfTheReturnRegisterCannotBeKeptAndIsRefused) {
  if (!cpu_has("avx2")) GTEST_SKIP() << "this CPU has no AVX2: tests/programs/avx_keeper cannot run";
  Target t(target_path("avx_keeper"));
  ASSERT_EQ(t.ask("d 4"), "same 4");
  std::string before = t.maps();
  CliRun r = livegraft({"apply", std::to_string(t.pid()), patch_path("avx_keeper_same")});
  EXPECT_EQ(r.exit_code, 6) << r.err;
  EXPECT_NE(r.err.find("'same'"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("ymm0.hi"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("return value"), std::string::npos) << r.err;
  EXPECT_EQ(t.maps(), before);
  EXPECT_EQ(t.ask("d 4"), "same 4");
}

}  // namespace
}  // namespace lg::e2e
