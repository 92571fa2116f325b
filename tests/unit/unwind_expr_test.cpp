// The CFI expression evaluator, fed raw DWARF expression bytes as compilers and glibc emit them.
#include <dwarf.h>
#include <gtest/gtest.h>

#include <cstring>
#include <map>

#include "unwind/dwarf_expr.h"

namespace lg {
namespace {

// Memory as a map of 8-byte words; reading anything else fails like an unmapped page.
class FakeMemory final : public MemoryReader {
 public:
  std::map<uint64_t, uint64_t> words;
  Result<uint64_t> read_u64(RemoteAddr a) override {
    auto it = words.find(a.value);
    if (it == words.end()) return make_error(ErrorKind::io, "unmapped {:#x}", a.value);
    return it->second;
  }
  Result<void> read(RemoteAddr a, std::span<uint8_t> out) override {
    LG_TRY(uint64_t w, read_u64(a));
    std::memcpy(out.data(), &w, std::min<size_t>(out.size(), 8));
    return {};
  }
};

std::vector<Dwarf_Op> decode(std::initializer_list<uint8_t> bytes) {
  std::vector<uint8_t> v(bytes);
  auto ops = decode_dwarf_expr(v);
  EXPECT_TRUE(ops.ok()) << (ops.ok() ? "" : ops.error().message);
  return ops.ok() ? *ops : std::vector<Dwarf_Op>{};
}

RegisterSet regs_with(std::initializer_list<std::pair<DwarfReg, uint64_t>> values) {
  RegisterSet r;
  for (auto [reg, v] : values) r.set(reg, v);
  return r;
}

// The CFA expression GCC/binutils emit for .plt entries (16 bytes each): CFA = rsp + 8, plus 8
// more once the entry has pushed its index (pc & 15 >= 11).
const std::initializer_list<uint8_t> kPltCfa = {DW_OP_breg7, 8, DW_OP_breg16, 0, DW_OP_lit15, DW_OP_and,
                                                DW_OP_lit11, DW_OP_ge, DW_OP_lit3, DW_OP_shl, DW_OP_plus};

TEST(UnwindExpr, PltCfaBeforeThePush) {
  FakeMemory mem;
  auto regs = regs_with({{DwarfReg::rsp, 0x7ffc1000}, {DwarfReg::rip, 0x401026}});  // & 15 == 6
  auto cfa = evaluate_cfa_rule(decode(kPltCfa), regs, mem);
  ASSERT_TRUE(cfa.ok()) << cfa.error().message;
  EXPECT_EQ(*cfa, 0x7ffc1008u);
}

TEST(UnwindExpr, PltCfaAfterThePush) {
  FakeMemory mem;
  auto regs = regs_with({{DwarfReg::rsp, 0x7ffc1000}, {DwarfReg::rip, 0x40102b}});  // & 15 == 11
  auto cfa = evaluate_cfa_rule(decode(kPltCfa), regs, mem);
  ASSERT_TRUE(cfa.ok()) << cfa.error().message;
  EXPECT_EQ(*cfa, 0x7ffc1010u);
}

// glibc's __restore_rt: CFA = *(rsp + offsetof(ucontext, uc_mcontext.rsp)) and each register is at
// rsp + its offset in the ucontext (DW_CFA_expression: a location).
TEST(UnwindExpr, SignalFrameRulesReadTheUcontext) {
  FakeMemory mem;
  const uint64_t rsp = 0x7ffd0000;
  mem.words[rsp + 0xa0] = 0x7ffd1234;  // uc_mcontext.gregs[REG_RSP]
  mem.words[rsp + 0xa8] = 0x401155;    // uc_mcontext.gregs[REG_RIP]
  auto regs = regs_with({{DwarfReg::rsp, rsp}});
  auto cfa = evaluate_cfa_rule(decode({DW_OP_breg7, 0xa0, 0x01, DW_OP_deref}), regs, mem);
  ASSERT_TRUE(cfa.ok()) << cfa.error().message;
  EXPECT_EQ(*cfa, 0x7ffd1234u);
  auto rip = evaluate_register_rule(decode({DW_OP_breg7, 0xa8, 0x01}), regs, *cfa, mem);
  ASSERT_TRUE(rip.ok()) << rip.error().message;
  EXPECT_EQ(*rip, 0x401155u);
}

TEST(UnwindExpr, OffsetAndValueRules) {
  FakeMemory mem;
  mem.words[0x1000 - 8] = 0xabcdef;
  RegisterSet regs;
  // DW_CFA_offset r16, -8 as libdw expresses it: a location at CFA - 8.
  auto ra = evaluate_register_rule(decode({DW_OP_call_frame_cfa, DW_OP_consts, 0x78, DW_OP_plus}), regs, 0x1000, mem);
  ASSERT_TRUE(ra.ok()) << ra.error().message;
  EXPECT_EQ(*ra, 0xabcdefu);
  // DW_CFA_val_offset rsp, 0: the value CFA itself.
  auto sp = evaluate_register_rule(decode({DW_OP_call_frame_cfa, DW_OP_stack_value}), regs, 0x1000, mem);
  ASSERT_TRUE(sp.ok()) << sp.error().message;
  EXPECT_EQ(*sp, 0x1000u);
}

TEST(UnwindExpr, RegisterLocationTakesTheRegistersValue) {
  FakeMemory mem;
  auto regs = regs_with({{DwarfReg::r10, 0x5555}});
  auto v = evaluate_register_rule(decode({DW_OP_reg10}), regs, 0, mem);
  ASSERT_TRUE(v.ok()) << v.error().message;
  EXPECT_EQ(*v, 0x5555u);
  auto x = evaluate_register_rule(decode({DW_OP_regx, 10}), regs, 0, mem);
  ASSERT_TRUE(x.ok());
  EXPECT_EQ(*x, 0x5555u);
}

TEST(UnwindExpr, ConstantsAndArithmetic) {
  FakeMemory mem;
  RegisterSet regs;
  // (1000 - 3) & 0xff  then  >= 200 ?  -> 997 & 255 = 229 >= 200 -> 1
  auto v = evaluate_cfa_rule(
      decode({DW_OP_const2u, 0xe8, 0x03, DW_OP_lit3, DW_OP_minus, DW_OP_const1u, 0xff, DW_OP_and, DW_OP_const1u, 200,
              DW_OP_ge}),
      regs, mem);
  ASSERT_TRUE(v.ok()) << v.error().message;
  EXPECT_EQ(*v, 1u);
  auto neg = evaluate_cfa_rule(decode({DW_OP_const1s, 0xfe, DW_OP_plus_uconst, 5}), regs, mem);  // -2 + 5
  ASSERT_TRUE(neg.ok());
  EXPECT_EQ(*neg, 3u);
  auto bregx = evaluate_cfa_rule(decode({DW_OP_bregx, 6, 0x70}), regs_with({{DwarfReg::rbp, 0x100}}), mem);  // rbp - 16
  ASSERT_TRUE(bregx.ok());
  EXPECT_EQ(*bregx, 0xf0u);
}

TEST(UnwindExpr, UnknownRegisterIsUnreliable) {
  FakeMemory mem;
  RegisterSet regs;  // rbp unknown: e.g. a caller-saved register after a call
  auto v = evaluate_cfa_rule(decode({DW_OP_breg6, 16}), regs, mem);
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.error().kind, ErrorKind::unsupported);
  EXPECT_NE(v.error().message.find("rbp"), std::string::npos) << v.error().message;
}

TEST(UnwindExpr, UnsupportedOperationIsUnreliable) {
  FakeMemory mem;
  RegisterSet regs;
  Dwarf_Op op{};
  op.atom = DW_OP_GNU_entry_value;
  auto v = evaluate_cfa_rule(std::span<const Dwarf_Op>(&op, 1), regs, mem);
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.error().kind, ErrorKind::unsupported);
  EXPECT_FALSE(decode_dwarf_expr(std::vector<uint8_t>{DW_OP_GNU_entry_value, 1, 0x50}).ok());
}

TEST(UnwindExpr, CallFrameCfaIsRefusedInTheCfaRule) {
  FakeMemory mem;
  RegisterSet regs;
  EXPECT_FALSE(evaluate_cfa_rule(decode({DW_OP_call_frame_cfa}), regs, mem).ok());
}

TEST(UnwindExpr, StackUnderflowAndBadMemoryFail) {
  FakeMemory mem;
  auto regs = regs_with({{DwarfReg::rsp, 0x10}});
  auto under = evaluate_cfa_rule(decode({DW_OP_plus}), regs, mem);
  ASSERT_FALSE(under.ok());
  EXPECT_EQ(under.error().kind, ErrorKind::unsupported);
  auto bad = evaluate_cfa_rule(decode({DW_OP_breg7, 0, DW_OP_deref}), regs, mem);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().kind, ErrorKind::io);
}

TEST(UnwindExpr, TruncatedBytesDoNotDecode) {
  EXPECT_FALSE(decode_dwarf_expr(std::vector<uint8_t>{DW_OP_const4u, 1, 2}).ok());
  EXPECT_FALSE(decode_dwarf_expr(std::vector<uint8_t>{DW_OP_breg7, 0x80}).ok());
}

}  // namespace
}  // namespace lg
