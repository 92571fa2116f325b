// Register-use analysis for the -fipa-ra hazard: bytes in, register sets out.
#include <gtest/gtest.h>

#include <vector>

#include "x86/register_use.h"

namespace lg::x86 {
namespace {

constexpr RegSet kRax = 1u << 0, kRcx = 1u << 1, kRdx = 1u << 2, kRdi = 1u << 7;

TEST(RegisterUse, LeafClobbersOnlyWhatItWrites) {
  // lea eax, [rdi*4+1]; ret
  std::vector<uint8_t> leaf = {0x8d, 0x04, 0xbd, 0x01, 0x00, 0x00, 0x00, 0xc3};
  EXPECT_EQ(clobbered_by(leaf, 0x1000), kRax);
  // mov rdx, rdi; shr rdx, 3; lea rax, [rdx+1]; ret
  std::vector<uint8_t> two = {0x48, 0x89, 0xfa, 0x48, 0xc1, 0xea, 0x03, 0x48, 0x8d, 0x42, 0x01, 0xc3};
  EXPECT_EQ(clobbered_by(two, 0x1000), kRax | kRdx);
}

TEST(RegisterUse, UnrelocatedJumpOfPatchCodeLeavesTheFunction) {
  // cmp dword [rdi+8], 2; jg <relocated: .text.unlikely>; mov eax, 1; ret
  std::vector<uint8_t> hot = {0x83, 0x7f, 0x08, 0x02, 0x0f, 0x8f, 0x00, 0x00, 0x00, 0x00, 0xb8, 0x01, 0x00, 0x00, 0x00, 0xc3};
  EXPECT_EQ(clobbered_by(hot, 0), caller_saved());
}

TEST(RegisterUse, AnyCallClobbersEveryCallerSavedRegister) {
  // push rbx; call +0; pop rbx; ret
  std::vector<uint8_t> caller = {0x53, 0xe8, 0x00, 0x00, 0x00, 0x00, 0x5b, 0xc3};
  EXPECT_EQ(clobbered_by(caller, 0x1000), caller_saved());
  EXPECT_EQ(describe(kRcx | kRdx | (1u << 16)), "rcx, rdx, xmm0");
}

// A caller at 0x2000: mov rdx, rdi; call 0x3000; mov ecx, [rdx+8]; add eax, ecx; ret
std::vector<uint8_t> caller_keeping_rdx() {
  return {0x48, 0x89, 0xfa,                    // 0x2000 mov rdx, rdi
          0xe8, 0xf8, 0x0f, 0x00, 0x00,        // 0x2003 call 0x3000
          0x8b, 0x4a, 0x08,                    // 0x2008 mov ecx, [rdx+8]
          0x01, 0xc8,                          // 0x200b add eax, ecx
          0xc3};                               // 0x200d ret
}

TEST(RegisterUse, CallSitesAreFoundByTarget) {
  auto code = caller_keeping_rdx();
  auto sites = call_sites(code, 0x2000, 0x3000);
  ASSERT_EQ(sites.returns.size(), 1u);
  EXPECT_EQ(sites.returns[0], 0x2008u);
  EXPECT_FALSE(sites.tail_jumps);
  EXPECT_TRUE(call_sites(code, 0x2000, 0x4000).returns.empty());
}

TEST(RegisterUse, CallerReadingAKeptRegisterIsAHazard) {
  auto code = caller_keeping_rdx();
  auto r = read_after_call(code, 0x2000, 0x2008, kRdx | kRcx, /*callers_assume_all=*/true);
  EXPECT_EQ(r.read, kRdx);
  EXPECT_EQ(r.at, 0x2008u);
  EXPECT_FALSE(r.unsure);
}

TEST(RegisterUse, CallerOverwritingFirstIsSafeUnlessItsOwnCallersMightRely) {
  // call 0x3000; mov edx, 1; add eax, edx; ret
  std::vector<uint8_t> code = {0xe8, 0xfb, 0x0f, 0x00, 0x00, 0xba, 0x01, 0x00, 0x00, 0x00, 0x01, 0xd0, 0xc3};
  auto safe = read_after_call(code, 0x2000, 0x2005, kRdx, /*callers_assume_all=*/true);
  EXPECT_EQ(safe.read, 0u);
  EXPECT_FALSE(safe.unsure);
  // rcx is never written on the way to ret: callers of this function might rely on it.
  auto risky = read_after_call(code, 0x2000, 0x2005, kRdx | kRcx, /*callers_assume_all=*/false);
  EXPECT_EQ(risky.read, kRcx);
}

TEST(RegisterUse, BranchesAreFollowedBothWays) {
  // call 0x3000; test eax, eax; je +3; mov edi, [rdi]; mov eax, 0; ret
  std::vector<uint8_t> code = {0xe8, 0xfb, 0x0f, 0x00, 0x00, 0x85, 0xc0, 0x74, 0x02, 0x8b, 0x3f,
                               0xb8, 0x00, 0x00, 0x00, 0x00, 0xc3};
  auto r = read_after_call(code, 0x2000, 0x2005, kRdi, /*callers_assume_all=*/true);
  EXPECT_EQ(r.read, kRdi);  // the fall-through path reads rdi
}

TEST(RegisterUse, UnknownCalleesMakeCallersAssumeEverything) {
  std::vector<uint8_t> code = {0xe8, 0xfb, 0x0f, 0x00, 0x00, 0xc3};  // call 0x3000; ret
  EXPECT_FALSE(calls_unknown(code, 0x2000, [](uint64_t a) { return a == 0x3000; }));
  EXPECT_TRUE(calls_unknown(code, 0x2000, [](uint64_t) { return false; }));
}

// After the call to the replaced function (0x3000), the caller calls G (0x4000), then returns
// or reads rcx. Without knowing G, the later call reads every argument register (rcx too).
std::vector<uint8_t> caller_calling_g_after(bool reads_rcx_after) {
  if (reads_rcx_after)
    return {0xe8, 0xfb, 0x0f, 0x00, 0x00,  // 0x2000 call 0x3000
            0xe8, 0xf6, 0x1f, 0x00, 0x00,  // 0x2005 call 0x4000
            0x01, 0xc8,                    // 0x200a add eax, ecx
            0xc3};
  return {0xe8, 0xfb, 0x0f, 0x00, 0x00, 0xe8, 0xf6, 0x1f, 0x00, 0x00, 0xc3};
}

TEST(RegisterUse, LaterCallToAKnownCalleeReadsOnlyWhatTheCalleeReads) {
  std::vector<uint8_t> g_reads_rdi = {0x89, 0xf8, 0xc3};  // mov eax, edi; ret
  std::vector<uint8_t> g_reads_rcx = {0x89, 0xc8, 0xc3};  // mov eax, ecx; ret
  auto code = caller_calling_g_after(false);
  auto conservative = read_after_call(code, 0x2000, 0x2005, kRcx, true);
  EXPECT_EQ(conservative.read, kRcx);
  EXPECT_EQ(conservative.at, 0x2005u);
  const std::vector<uint8_t>* g = &g_reads_rdi;
  FindCallee find = [&](uint64_t a) -> std::optional<Callee> {
    if (a != 0x4000) return std::nullopt;
    return Callee{*g, 0x4000, true};
  };
  auto precise = read_after_call(code, 0x2000, 0x2005, kRcx, true, find);
  EXPECT_EQ(precise.read, 0u);
  EXPECT_FALSE(precise.unsure);
  g = &g_reads_rcx;
  EXPECT_EQ(read_after_call(code, 0x2000, 0x2005, kRcx, true, find).read, kRcx);
  EXPECT_EQ(reads_on_entry(g_reads_rcx, 0x4000, kRcx | kRdi, find), std::optional<RegSet>(kRcx));
}

TEST(RegisterUse, AKnownCalleeOfTheSameUnitMayPreserveWhatTheCallerReadsAfterIt) {
  std::vector<uint8_t> g = {0x89, 0xf8, 0xc3};  // mov eax, edi; ret: leaves rcx alone
  auto code = caller_calling_g_after(true);
  FindCallee same_unit = [&](uint64_t) -> std::optional<Callee> { return Callee{g, 0x4000, true}; };
  EXPECT_EQ(read_after_call(code, 0x2000, 0x2005, kRcx, true, same_unit).read, kRcx);
  // A callee of another unit: the caller's compiler assumed the ABI, so rcx is dead after it.
  FindCallee other_unit = [&](uint64_t) -> std::optional<Callee> { return Callee{g, 0x4000, false}; };
  EXPECT_EQ(read_after_call(code, 0x2000, 0x2005, kRcx, true, other_unit).read, 0u);
}

}  // namespace
}  // namespace lg::x86
