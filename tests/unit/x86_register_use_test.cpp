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

// ---- Vector width (AVX upper halves, AVX-512 registers 16-31 and masks)

constexpr RegSet xmm_low(unsigned i) { return reg_bit(16 + i); }
constexpr RegSet ymm_hi(unsigned i) { return reg_bit(32 + i); }
constexpr RegSet zmm_high16(unsigned i) { return reg_bit(48 + i - 16); }
constexpr RegSet mask(unsigned i) { return reg_bit(64 + i); }

TEST(RegisterUseVector, LegacySseWritesLeaveTheUpperHalfVexWritesZeroIt) {
  std::vector<uint8_t> sse = {0x0f, 0x28, 0xc8, 0xc3};         // movaps xmm1, xmm0; ret
  std::vector<uint8_t> vex = {0xc5, 0xf8, 0x28, 0xc8, 0xc3};   // vmovaps xmm1, xmm0; ret
  std::vector<uint8_t> ymm = {0xc5, 0xf5, 0x76, 0xc9, 0xc3};   // vpcmpeqd ymm1, ymm1, ymm1; ret
  EXPECT_EQ(clobbered_by(sse, 0x1000), xmm_low(1));
  EXPECT_EQ(clobbered_by(vex, 0x1000), xmm_low(1) | ymm_hi(1));
  EXPECT_EQ(clobbered_by(ymm, 0x1000), xmm_low(1) | ymm_hi(1));
}

TEST(RegisterUseVector, VzeroupperClobbersEveryUpperHalfAndNoLowHalf) {
  std::vector<uint8_t> code = {0xc5, 0xf8, 0x77, 0xc3};  // vzeroupper; ret
  EXPECT_EQ(clobbered_by(code, 0x1000), kVectorUpper);
}

TEST(RegisterUseVector, EvexRegisters16To31AndMaskRegistersAreTracked) {
  // vpaddd zmm17, zmm16, zmm16; kxnorw k1, k0, k0; ret
  std::vector<uint8_t> code = {0x62, 0xa1, 0x7d, 0x40, 0xfe, 0xc8, 0xc5, 0xfc, 0x46, 0xc8, 0xc3};
  EXPECT_EQ(clobbered_by(code, 0x1000), zmm_high16(17) | mask(1));
  EXPECT_EQ(describe(zmm_high16(17) | mask(1) | ymm_hi(3) | xmm_low(3)), "xmm3, ymm3.hi, zmm17, k1");
}

TEST(RegisterUseVector, EveryVectorAndMaskRegisterIsCallerSaved) {
  EXPECT_EQ(caller_saved() & kWideVectorState, kWideVectorState);
  EXPECT_EQ(caller_saved() & kXmmLow, kXmmLow);
  std::vector<uint8_t> caller = {0x53, 0xe8, 0x00, 0x00, 0x00, 0x00, 0x5b, 0xc3};  // push rbx; call; pop rbx; ret
  EXPECT_EQ(clobbered_by(caller, 0x1000) & kWideVectorState, kWideVectorState);
}

// A caller at 0x2000: call 0x3000; [the instruction under test]; vzeroupper; ret
std::vector<uint8_t> caller_then(std::initializer_list<uint8_t> insn) {
  std::vector<uint8_t> code;
  code.reserve(32);  // (GCC 12 warns of a bogus array bound when inserting into a 5-byte vector)
  for (uint8_t b : {0xe8, 0xfb, 0x0f, 0x00, 0x00}) code.push_back(b);  // 0x2000 call 0x3000
  for (uint8_t b : insn) code.push_back(b);
  for (uint8_t b : {0xc5, 0xf8, 0x77, 0xc3}) code.push_back(b);  // vzeroupper; ret
  return code;
}

TEST(RegisterUseVector, ReadingTheYmmAfterTheCallReadsItsUpperHalfTheXmmDoesNot) {
  RegSet watch = ymm_hi(1);
  // vpaddd ymm3, ymm2, ymm1: reads ymm1 whole
  EXPECT_EQ(read_after_call(caller_then({0xc5, 0xed, 0xfe, 0xd9}), 0x2000, 0x2005, watch, false).read, ymm_hi(1));
  // vextracti128 xmm0, ymm1, 1: reads the upper half
  EXPECT_EQ(read_after_call(caller_then({0xc4, 0xe3, 0x7d, 0x39, 0xc8, 0x01}), 0x2000, 0x2005, watch, false).read,
            ymm_hi(1));
  // vpaddd xmm3, xmm2, xmm1: only the low half; the vzeroupper then ends the upper half's life
  auto low = read_after_call(caller_then({0xc5, 0xe9, 0xfe, 0xd9}), 0x2000, 0x2005, watch, false);
  EXPECT_EQ(low.read, 0u);
  EXPECT_FALSE(low.unsure);
  // vmovdqu ymm0, ymm1 reads ymm1.hi; a VEX write of xmm1 (vpxor xmm1...) would have ended it
  EXPECT_EQ(read_after_call(caller_then({0xc5, 0xfe, 0x6f, 0xc1}), 0x2000, 0x2005, watch, false).read, ymm_hi(1));
}

TEST(RegisterUseVector, AMergeMaskedWriteKeepsTheOldValue) {
  // vpaddd zmm0{k1}, zmm0, zmm1 reads zmm0 (and k1) and writes only some of its lanes
  auto r = read_after_call(caller_then({0x62, 0xf1, 0x7d, 0x49, 0xfe, 0xc1}), 0x2000, 0x2005, mask(1) | ymm_hi(0),
                           false);
  EXPECT_EQ(r.read, mask(1) | ymm_hi(0));
  // The upper half of a ymm passes to a later unknown call as an argument (__m256 in ymm0-7).
  std::vector<uint8_t> two_calls = {0xe8, 0xfb, 0x0f, 0x00, 0x00, 0xe8, 0xf6, 0x1f, 0x00, 0x00, 0xc3};
  EXPECT_EQ(read_after_call(two_calls, 0x2000, 0x2005, ymm_hi(2), true).read, ymm_hi(2));
  EXPECT_EQ(read_after_call(two_calls, 0x2000, 0x2005, ymm_hi(9) | zmm_high16(20), true).read, 0u);
}

TEST(RegisterUseVector, AvxEncodingIsTheWidestAFunctionUses) {
  // Baseline code (legacy SSE) reaches nothing beyond the low halves of xmm0-15.
  std::vector<uint8_t> sse = {0x0f, 0x28, 0xc8, 0xe8, 0x00, 0x00, 0x00, 0x00, 0xc3};  // movaps; call; ret
  EXPECT_EQ(avx_encoding(sse, 0x1000), AvxEncoding::none);
  std::vector<uint8_t> vex = {0x90, 0xc5, 0xf5, 0x76, 0xc9, 0xc3};  // nop; vpcmpeqd ymm1, ymm1, ymm1; ret
  EXPECT_EQ(avx_encoding(vex, 0x1000), AvxEncoding::vex);
  std::vector<uint8_t> evex = {0xc5, 0xf5, 0x76, 0xc9, 0x62, 0xa1, 0x7d, 0x40, 0xfe, 0xc8};  // + vpaddd zmm17...
  EXPECT_EQ(avx_encoding(evex, 0x1000), AvxEncoding::evex);
  std::vector<uint8_t> kmask = {0xc5, 0xfc, 0x46, 0xc8, 0xc3};  // kxnorw k1, k0, k0 (VEX, AVX-512)
  EXPECT_EQ(avx_encoding(kmask, 0x1000), AvxEncoding::evex);
}

TEST(RegisterUseVector, ThunkRegsSaveAtTheWidthsTheMachineHas) {
  RegSet preserve = RegSet{1u << 2} | xmm_low(4) | ymm_hi(4) | ymm_hi(5) | zmm_high16(20) | mask(3);
  ThunkRegs none = thunk_regs(preserve, {});
  EXPECT_EQ(none.regs, (1u << 2) | (1u << 20));  // no AVX: no upper halves exist
  EXPECT_EQ(none.vec, 0u);
  ThunkRegs avx = thunk_regs(preserve, {.avx = true});
  EXPECT_EQ(avx.vec, thunk_ymm(4) | thunk_ymm(5));
  ThunkRegs f = thunk_regs(preserve, {.avx = true, .avx512 = true});
  EXPECT_EQ(f.vec, thunk_zmm(4) | thunk_zmm(5) | thunk_zmm(20) | thunk_k(3));
  ThunkRegs bw = thunk_regs(preserve, {.avx = true, .avx512 = true, .avx512bw = true});
  EXPECT_EQ(bw.vec, f.vec | kThunkMask64);
}

}  // namespace
}  // namespace lg::x86
