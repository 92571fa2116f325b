// check_patchable(): machine code bytes in, verdicts out.
#include "x86/patchability.h"

#include <gtest/gtest.h>

#include <vector>

namespace lg::x86 {
namespace {

constexpr uint64_t kAddr = 0x401000;

Result<PatchSite> check(const std::vector<uint8_t>& code) { return check_patchable(code, kAddr, "f"); }

TEST(X86Patchability, PlainPrologueDisplacesWholeInstructions) {
  // push rbp; mov rbp,rsp; mov [rbp-4],edi; mov eax,[rbp-4]; pop rbp; ret
  auto r = check({0x55, 0x48, 0x89, 0xe5, 0x89, 0x7d, 0xfc, 0x8b, 0x45, 0xfc, 0x5d, 0xc3});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->func_addr, kAddr);
  EXPECT_EQ(r->jump_addr, kAddr);
  EXPECT_EQ(r->displaced, 7u);  // 1 + 3 + 3: the 5 bytes end inside the third instruction
}

TEST(X86Patchability, Endbr64JumpGoesAfterIt) {
  // endbr64; sub rsp,8; add rsp,8; ret
  auto r = check({0xf3, 0x0f, 0x1e, 0xfa, 0x48, 0x83, 0xec, 0x08, 0x48, 0x83, 0xc4, 0x08, 0xc3});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->jump_addr, kAddr + 4);
  EXPECT_EQ(r->displaced, 8u);
}

TEST(X86Patchability, ExactlyFiveBytesIsEnough) {
  auto r = check({0xe9, 0x10, 0x00, 0x00, 0x00});  // jmp rel32 (a tail call)
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->displaced, 5u);
}

TEST(X86Patchability, TooShortIsRefused) {
  auto r = check({0x31, 0xc0, 0xc3});  // xor eax,eax; ret
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::unsupported);
  EXPECT_NE(r.error().message.find("too short"), std::string::npos) << r.error().message;
}

TEST(X86Patchability, TooShortAfterEndbr64IsRefused) {
  // endbr64; xor eax,eax; inc eax; ret: 8 bytes, 4 after the endbr64
  auto r = check({0xf3, 0x0f, 0x1e, 0xfa, 0x31, 0xc0, 0xff, 0xc0});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("after its endbr64"), std::string::npos) << r.error().message;
}

TEST(X86Patchability, LoopBackIntoDisplacedBytesIsRefused) {
  // +0 xor eax,eax; +2 add eax,1; +5 cmp eax,10; +8 jne +2; +10 ret
  auto r = check({0x31, 0xc0, 0x83, 0xc0, 0x01, 0x83, 0xf8, 0x0a, 0x75, 0xf8, 0xc3});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::unsupported);
  EXPECT_NE(r.error().message.find("+0x8"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("branches to +0x2"), std::string::npos) << r.error().message;
}

TEST(X86Patchability, LoopBackToEntryIsFine) {
  // +0 add eax,1; +3 cmp eax,10; +6 jne +0; +8 ret: the jump lands on the new jmp itself
  auto r = check({0x83, 0xc0, 0x01, 0x83, 0xf8, 0x0a, 0x75, 0xf8, 0xc3});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->displaced, 6u);
}

TEST(X86Patchability, BranchToFirstByteAfterTheJumpIsFine) {
  // +0 mov eax,1 (5 bytes); +5 dec eax; +7 jnz +5; +9 ret
  auto r = check({0xb8, 0x01, 0x00, 0x00, 0x00, 0xff, 0xc8, 0x75, 0xfc, 0xc3});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->displaced, 5u);
}

TEST(X86Patchability, CallIntoDisplacedBytesAfterEndbr64IsRefused) {
  // endbr64; +4 push rbx; +5 mov ebx,edi; +7 pop rbx; +8 ret; +9 call +6 (rel32); +14 ret
  std::vector<uint8_t> code = {0xf3, 0x0f, 0x1e, 0xfa, 0x53, 0x89, 0xfb, 0x5b, 0xc3, 0xe8, 0, 0, 0, 0, 0xc3};
  int32_t rel = 6 - 14;
  std::memcpy(&code[10], &rel, 4);
  auto r = check(code);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("call"), std::string::npos) << r.error().message;
}

TEST(X86Patchability, RipRelativeAddressIntoDisplacedBytesIsRefused) {
  // +0 push rbp; +1 push rbx; +2 push r12 (2 bytes); +4 lea rax,[rip-?] -> +3; +11 ret
  std::vector<uint8_t> code = {0x55, 0x53, 0x41, 0x54, 0x48, 0x8d, 0x05, 0, 0, 0, 0, 0xc3};
  int32_t disp = 3 - 11;
  std::memcpy(&code[7], &disp, 4);
  auto r = check(code);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("takes the address"), std::string::npos) << r.error().message;
}

TEST(X86Patchability, UndecodableBytesAreRefused) {
  // 0x06 (push es) does not exist in 64-bit mode
  auto r = check({0x55, 0x06, 0x48, 0x89, 0xe5, 0x5d, 0xc3});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("undecodable instruction at +0x1"), std::string::npos) << r.error().message;
}

TEST(X86Patchability, InstructionRunningPastTheEndIsRefused) {
  // push rbp; mov rbp,rsp; then a mov rax,[rip+disp32] cut after two bytes of its displacement
  auto r = check({0x55, 0x48, 0x89, 0xe5, 0x48, 0x8b, 0x05, 0x00, 0x00});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("past the end"), std::string::npos) << r.error().message;
}

TEST(X86Patchability, GarbageAfterFinalRetIsTolerated) {
  // sub rsp,8; add rsp,8; ret; then padding and bytes that do not decode
  auto r = check({0x48, 0x83, 0xec, 0x08, 0x48, 0x83, 0xc4, 0x08, 0xc3, 0xcc, 0x0f, 0x1f, 0x00, 0x06, 0x06});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->displaced, 8u);
}

TEST(X86Patchability, GarbageInsideDisplacedBytesIsRefusedEvenAfterRet) {
  // ret; then bytes that do not decode inside the 5 bytes the jump covers
  auto r = check({0xc3, 0x06, 0x06, 0x06, 0x06, 0x06});
  ASSERT_FALSE(r.ok());
}

TEST(X86Disassemble, FormatsOneInstruction) {
  const uint8_t ret[] = {0xc3};
  EXPECT_EQ(disassemble_one(ret, kAddr), "ret");
  const uint8_t jmp[] = {0xeb, 0x10};
  EXPECT_EQ(disassemble_one(jmp, kAddr), "jmp 0x0000000000401012");
  const uint8_t bad[] = {0x06};
  EXPECT_EQ(disassemble_one(bad, kAddr), "(bad)");
}

}  // namespace
}  // namespace lg::x86
