// Entry thunks (src/x86/entry_thunk.h): bytes and CFI for a preserved register set.
#include <Zydis/Zydis.h>
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "x86/entry_thunk.h"

namespace lg::x86 {
namespace {

TEST(EntryThunk, SavesRestoresAndKeepsTheCallAligned) {
  constexpr uint32_t rcx = 1u << 1, rdx = 1u << 2, r9 = 1u << 9, xmm0 = 1u << 16, rax = 1u << 0;
  auto t = encode_entry_thunk(rcx | rdx | r9 | xmm0 | rax);  // rax is never preserved
  const auto& c = t.code;
  // push rcx; push rdx; push r9: CFA offset 32, so 16 for xmm0 + 0 padding keeps rsp aligned.
  ASSERT_GE(c.size(), 8u);
  EXPECT_EQ(std::vector<uint8_t>(c.begin(), c.begin() + 4), (std::vector<uint8_t>{0x51, 0x52, 0x41, 0x51}));
  EXPECT_EQ(std::vector<uint8_t>(c.begin() + 4, c.begin() + 11), (std::vector<uint8_t>{0x48, 0x81, 0xec, 16, 0, 0, 0}));
  EXPECT_EQ(c[t.call_disp_at - 2], 0xff);
  EXPECT_EQ(c[t.call_disp_at - 1], 0x15);
  EXPECT_EQ(std::vector<uint8_t>(c.end() - 5, c.end()), (std::vector<uint8_t>{0x41, 0x59, 0x5a, 0x59, 0xc3}));
  // Two pushes: CFA offset 24, so 8 bytes of padding.
  auto even = encode_entry_thunk(rcx | rdx);
  EXPECT_EQ(std::vector<uint8_t>(even.code.begin() + 2, even.code.begin() + 9),
            (std::vector<uint8_t>{0x48, 0x81, 0xec, 8, 0, 0, 0}));
  EXPECT_TRUE(set_thunk_call_target(t, 0x10000, 0x20000));
  EXPECT_FALSE(set_thunk_call_target(t, 0x10000, 0x10000 + (1ull << 32)));
}

TEST(EntryThunk, EhFrameHasACieAndOneFdePerThunk) {
  auto t = encode_entry_thunk(1u << 1);
  auto eh = encode_thunk_eh_frame(0x5000, {{0x6000, t.code.size(), &t.cfa_program}});
  ASSERT_GE(eh.size(), 32u);
  uint32_t cie_len, fde_len, cie_ptr;
  int32_t pc;
  std::memcpy(&cie_len, eh.data(), 4);
  EXPECT_EQ(eh[4] | eh[5] | eh[6] | eh[7], 0);  // CIE id 0
  EXPECT_EQ((cie_len + 4) % 8, 0u);
  std::memcpy(&fde_len, eh.data() + cie_len + 4, 4);
  std::memcpy(&cie_ptr, eh.data() + cie_len + 8, 4);
  std::memcpy(&pc, eh.data() + cie_len + 12, 4);
  EXPECT_EQ(cie_ptr, cie_len + 8);                                // back to offset 0
  EXPECT_EQ(0x5000 + cie_len + 12 + static_cast<int64_t>(pc), 0x6000);  // pc-relative start
  EXPECT_EQ(cie_len + 4 + fde_len + 4, eh.size());
}

// ---- Vector state at full width

struct Insn {
  std::string text;  // mnemonic and operands as Zydis formats them
  ZydisDecodedInstruction insn;
  ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
};

std::vector<Insn> decode_all(const std::vector<uint8_t>& code) {
  ZydisDecoder dec;
  ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
  ZydisFormatter fmt;
  ZydisFormatterInit(&fmt, ZYDIS_FORMATTER_STYLE_INTEL);
  std::vector<Insn> out;
  for (size_t at = 0; at < code.size();) {
    Insn i;
    if (!ZYAN_SUCCESS(ZydisDecoderDecodeFull(&dec, code.data() + at, code.size() - at, &i.insn, i.ops))) {
      ADD_FAILURE() << "undecodable byte at +" << at;
      break;
    }
    char buf[128];
    ZydisFormatterFormatInstruction(&fmt, &i.insn, i.ops, i.insn.operand_count_visible, buf, sizeof buf, 0, nullptr);
    i.text = buf;
    at += i.insn.length;
    out.push_back(i);
  }
  return out;
}

std::vector<std::string> texts(const std::vector<Insn>& insns) {
  std::vector<std::string> out;
  for (const auto& i : insns) out.push_back(i.text);
  return out;
}

TEST(EntryThunkVector, SavesEachRegisterOnceAtItsWidestWidth) {
  // rcx; xmm2 (low half only); ymm3 whole (also named as xmm3: saved once); zmm17; k1 at 64 bits
  ThunkRegs p{(1u << 1) | (1u << 18) | (1u << 19), thunk_ymm(3) | thunk_zmm(17) | thunk_k(1) | kThunkMask64};
  auto t = encode_entry_thunk(p);
  auto insns = decode_all(t.code);
  // push rcx: CFA offset 16; saves 64 + 32 + 16 + 8 = 120 bytes, so a 128-byte frame (CFA 144).
  std::vector<std::string> want = {
      "push rcx",
      "sub rsp, 0x80",
      "vmovdqu64 [rsp], zmm17",
      "vmovdqu [rsp+0x40], ymm3",
      "movdqu [rsp+0x60], xmm2",
      "kmovq [rsp+0x70], k1",
      "call [0x0000000000000000]",  // rip-relative slot, displacement filled in later
      "vmovdqu64 zmm17, [rsp]",
      "vmovdqu ymm3, [rsp+0x40]",
      "movdqu xmm2, [rsp+0x60]",
      "kmovq k1, [rsp+0x70]",
      "add rsp, 0x80",
      "pop rcx",
      "ret",
  };
  auto got = texts(insns);
  ASSERT_EQ(got.size(), want.size()) << ::testing::PrintToString(got);
  for (size_t i = 0; i < want.size(); ++i) {
    if (want[i].rfind("call", 0) == 0) {
      EXPECT_EQ(insns[i].insn.mnemonic, ZYDIS_MNEMONIC_CALL);
      EXPECT_EQ(insns[i].ops[0].mem.base, ZYDIS_REGISTER_RIP);
      continue;
    }
    // Zydis prints memory operand sizes ("zmmword ptr"): compare without them.
    std::string g = got[i];
    for (const char* ptr : {"zmmword ptr ", "ymmword ptr ", "xmmword ptr ", "qword ptr "})
      for (size_t at; (at = g.find(ptr)) != std::string::npos;) g.erase(at, std::strlen(ptr));
    EXPECT_EQ(g, want[i]) << "instruction " << i;
  }
  // Encodings: VEX for ymm and k, EVEX for zmm, legacy for the xmm low half.
  EXPECT_EQ(insns[2].insn.encoding, ZYDIS_INSTRUCTION_ENCODING_EVEX);
  EXPECT_EQ(insns[3].insn.encoding, ZYDIS_INSTRUCTION_ENCODING_VEX);
  EXPECT_EQ(insns[4].insn.encoding, ZYDIS_INSTRUCTION_ENCODING_LEGACY);
  EXPECT_EQ(insns[5].insn.encoding, ZYDIS_INSTRUCTION_ENCODING_VEX);
  // CFI: push (offset 16, rcx at CFA-16), then sub: DW_CFA_advance_loc 7, def_cfa_offset 144.
  std::vector<uint8_t> cfa_after_sub = {0x47, 0x0e, 0x90, 0x01};
  EXPECT_NE(std::search(t.cfa_program.begin(), t.cfa_program.end(), cfa_after_sub.begin(), cfa_after_sub.end()),
            t.cfa_program.end());
  // The frame keeps rsp 16-aligned at the call whatever the mix: without the push, pad 8.
  auto no_gpr = decode_all(encode_entry_thunk(ThunkRegs{0, thunk_ymm(0)}).code);
  EXPECT_EQ(no_gpr[0].text, "sub rsp, 0x28");
  // kmovw without AVX512BW.
  auto kw = decode_all(encode_entry_thunk(ThunkRegs{0, thunk_k(7)}).code);
  EXPECT_EQ(kw[1].text, "kmovw word ptr [rsp], k7");
}

TEST(EntryThunkVector, EveryVectorRegisterEncodesAndDecodesBack) {
  ThunkRegs all{0, 0};
  for (unsigned i = 0; i < 32; ++i) all.vec |= thunk_zmm(i);
  auto insns = decode_all(encode_entry_thunk(all).code);
  ASSERT_EQ(insns.size(), 1 + 32 + 1 + 32 + 1 + 1u);
  // EVEX moves have a mask operand ({k0}: none) between the memory and the register operand.
  for (unsigned i = 0; i < 32; ++i) {
    const auto& store = insns[1 + i];
    EXPECT_EQ(store.insn.mnemonic, ZYDIS_MNEMONIC_VMOVDQU64);
    EXPECT_EQ(store.insn.avx.mask.mode, ZYDIS_MASK_MODE_DISABLED);
    EXPECT_EQ(store.ops[0].mem.base, ZYDIS_REGISTER_RSP);
    EXPECT_EQ(store.ops[0].mem.disp.value, 64 * i);
    EXPECT_EQ(store.ops[2].reg.value, ZYDIS_REGISTER_ZMM0 + i);
    EXPECT_EQ(store.ops[2].size, 512);
    const auto& load = insns[1 + 32 + 1 + i];
    EXPECT_EQ(load.ops[0].reg.value, ZYDIS_REGISTER_ZMM0 + i);
    EXPECT_EQ(load.ops[2].mem.disp.value, 64 * i);
  }
  ThunkRegs ymms{0, 0};
  for (unsigned i = 0; i < 16; ++i) ymms.vec |= thunk_ymm(i);
  auto y = decode_all(encode_entry_thunk(ymms).code);
  for (unsigned i = 0; i < 16; ++i) {
    EXPECT_EQ(y[1 + i].insn.mnemonic, ZYDIS_MNEMONIC_VMOVDQU);
    EXPECT_EQ(y[1 + i].ops[1].reg.value, ZYDIS_REGISTER_YMM0 + i);
    EXPECT_EQ(y[1 + i].ops[0].mem.disp.value, 32 * i);
  }
}

// Runs a thunk in this process around [callee] (machine code), with ymm1 (and, for AVX-512,
// zmm17 and k1) holding known values; returns what they hold after.
struct VectorValues {
  uint64_t ymm1[4];
  uint64_t zmm17[8];
  uint64_t k1;
};
class ThunkRunner {
 public:
  ThunkRunner(const ThunkRegs& preserve, const std::vector<uint8_t>& callee) {
    mem_ = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem_ == MAP_FAILED) return;
    auto* base = static_cast<uint8_t*>(mem_);
    auto t = encode_entry_thunk(preserve);
    uint64_t thunk = reinterpret_cast<uint64_t>(base), callee_at = thunk + 2048, slot = thunk + 4088;
    if (!set_thunk_call_target(t, thunk, slot)) return;
    std::memcpy(base, t.code.data(), t.code.size());
    std::memcpy(base + 2048, callee.data(), callee.size());
    std::memcpy(base + 4088, &callee_at, 8);
    ok_ = true;
  }
  ~ThunkRunner() {
    if (mem_ != MAP_FAILED) ::munmap(mem_, 4096);
  }
  bool ok() const { return ok_; }
  VectorValues run_ymm() const {
    VectorValues in{}, out{};
    for (int i = 0; i < 4; ++i) in.ymm1[i] = 0x1111111111111111ull * static_cast<uint64_t>(i + 1);
    void* fn = mem_;
    // Below the red zone for the call; the thunk does not need an aligned rsp for itself.
    __asm__ volatile(
        "vmovdqu %[in], %%ymm1\n\t"
        "sub $128, %%rsp\n\t"
        "call *%[fn]\n\t"
        "add $128, %%rsp\n\t"
        "vmovdqu %%ymm1, %[out]\n\t"
        "vzeroupper"
        : [out] "=m"(out.ymm1)
        : [in] "m"(in.ymm1), [fn] "r"(fn)
        : "rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5",
          "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "memory", "cc");
    return out;
  }
  __attribute__((target("avx512f,avx512bw"))) VectorValues run_avx512() const {
    VectorValues in{}, out{};
    for (int i = 0; i < 8; ++i) in.zmm17[i] = 0x0101010101010101ull * static_cast<uint64_t>(i + 1);
    in.k1 = 0x5a5a5a5a5a5a5a5aull;
    void* fn = mem_;
    __asm__ volatile(
        "vmovdqu64 %[z], %%zmm17\n\t"
        "kmovq %[k], %%k1\n\t"
        "sub $128, %%rsp\n\t"
        "call *%[fn]\n\t"
        "add $128, %%rsp\n\t"
        "vmovdqu64 %%zmm17, %[zo]\n\t"
        "kmovq %%k1, %[ko]\n\t"
        "vzeroupper"
        : [zo] "=m"(out.zmm17), [ko] "=m"(out.k1)
        : [z] "m"(in.zmm17), [k] "m"(in.k1), [fn] "r"(fn)
        : "rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5",
          "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm17", "k1", "memory",
          "cc");
    return out;
  }

 private:
  void* mem_ = MAP_FAILED;
  bool ok_ = false;
};

TEST(EntryThunkVector, AYmmThunkKeepsTheUpperHalfTheLegacyOneLosesIt) {
  if (!__builtin_cpu_supports("avx2")) GTEST_SKIP() << "this CPU has no AVX2";
  // The "replacement": vpcmpeqd ymm1, ymm1, ymm1 (all ones); ret
  std::vector<uint8_t> clobber = {0xc5, 0xf5, 0x76, 0xc9, 0xc3};
  ThunkRunner legacy(ThunkRegs{1u << 17, 0}, clobber);  // xmm1's low half only (the thunk of old)
  ThunkRunner full(ThunkRegs{1u << 17, thunk_ymm(1)}, clobber);
  ASSERT_TRUE(legacy.ok() && full.ok());
  VectorValues l = legacy.run_ymm(), f = full.run_ymm();
  EXPECT_EQ(l.ymm1[0], 0x1111111111111111ull);  // low half restored...
  EXPECT_EQ(l.ymm1[2], ~0ull);                  // ...the upper one not
  for (int i = 0; i < 4; ++i) EXPECT_EQ(f.ymm1[i], 0x1111111111111111ull * static_cast<uint64_t>(i + 1)) << i;
}

TEST(EntryThunkVector, AnEvexThunkKeepsZmm16To31AndMaskRegisters) {
  if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw"))
    GTEST_SKIP() << "this CPU has no AVX-512F/BW";
  // vpternlogd zmm17, zmm17, zmm17, 0xff (all ones); kxnorw k1, k0, k0; ret
  std::vector<uint8_t> clobber = {0x62, 0xa3, 0x75, 0x40, 0x25, 0xc9, 0xff, 0xc5, 0xfc, 0x46, 0xc8, 0xc3};
  ThunkRunner none(ThunkRegs{1u << 1, 0}, clobber);
  ThunkRunner full(ThunkRegs{0, thunk_zmm(17) | thunk_k(1) | kThunkMask64}, clobber);
  ASSERT_TRUE(none.ok() && full.ok());
  VectorValues n = none.run_avx512(), f = full.run_avx512();
  EXPECT_EQ(n.zmm17[5], ~0ull);  // the clobber is real
  EXPECT_EQ(n.k1, 0xffffu);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(f.zmm17[i], 0x0101010101010101ull * static_cast<uint64_t>(i + 1)) << i;
  EXPECT_EQ(f.k1, 0x5a5a5a5a5a5a5a5aull);
}

}  // namespace
}  // namespace lg::x86
