// Relocation of displaced entry instructions into the original continuation: bytes in, bytes out.
#include <gtest/gtest.h>

#include <vector>

#include "x86/continuation.h"
#include "x86/encode.h"
#include "x86/prologue.h"

namespace lg::x86 {
namespace {

constexpr uint64_t kAt = 0x401000;
constexpr uint64_t kBase = 0x400000;  // where the continuation is placed

std::vector<uint8_t> placed(std::vector<uint8_t> code) {
  code.resize(32, 0x90);
  auto t = relocate_prologue(code, kAt, "f");
  EXPECT_TRUE(t.ok()) << (t ? "" : t.error().message);
  if (!t) return {};
  auto out = place_continuation(*t, kBase);
  EXPECT_TRUE(out.has_value());
  return out.value_or(std::vector<uint8_t>{});
}

std::vector<uint8_t> rel32(uint64_t from_end, uint64_t to) {
  int32_t d = static_cast<int32_t>(static_cast<int64_t>(to - from_end));
  std::vector<uint8_t> b(4);
  std::memcpy(b.data(), &d, 4);
  return b;
}

std::vector<uint8_t> cat(std::initializer_list<std::vector<uint8_t>> parts) {
  std::vector<uint8_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

TEST(Prologue, PlainInstructionsAreCopiedAndJumpBackAfterThem) {
  // push rbp; mov rbp,rsp; sub rsp,0x10 (8 bytes displaced)
  auto out = placed({0x55, 0x48, 0x89, 0xe5, 0x48, 0x83, 0xec, 0x10});
  auto want = cat({{0x55, 0x48, 0x89, 0xe5, 0x48, 0x83, 0xec, 0x10, 0xe9}, rel32(kBase + 13, kAt + 8)});
  EXPECT_EQ(out, want);
}

TEST(Prologue, RipRelativeOperandKeepsItsAbsoluteTarget) {
  // mov rax, [rip+0x100]
  auto out = placed({0x48, 0x8b, 0x05, 0x00, 0x01, 0x00, 0x00});
  auto want = cat({{0x48, 0x8b, 0x05}, rel32(kBase + 7, kAt + 7 + 0x100), {0xe9}, rel32(kBase + 12, kAt + 7)});
  EXPECT_EQ(out, want);
}

TEST(Prologue, RipRelativeOperandFollowedByAnImmediateIsRelativeToTheInstructionEnd) {
  // cmp dword [rip+0x20], 5   (83 3d disp32 imm8)
  auto out = placed({0x83, 0x3d, 0x20, 0x00, 0x00, 0x00, 0x05});
  auto want = cat({{0x83, 0x3d}, rel32(kBase + 7, kAt + 7 + 0x20), {0x05, 0xe9}, rel32(kBase + 12, kAt + 7)});
  EXPECT_EQ(out, want);
}

TEST(Prologue, ShortBranchesAreWidened) {
  // test edi,edi; je +0x20; push rbx
  auto out = placed({0x85, 0xff, 0x74, 0x20, 0x53});
  auto want = cat({{0x85, 0xff, 0x0f, 0x84}, rel32(kBase + 8, kAt + 4 + 0x20), {0x53, 0xe9}, rel32(kBase + 14, kAt + 5)});
  EXPECT_EQ(out, want);
  // jmp short +0x10
  auto j = placed({0xeb, 0x10, 0x90, 0x90, 0x90});
  EXPECT_EQ(std::vector<uint8_t>(j.begin(), j.begin() + 5), cat({{0xe9}, rel32(kBase + 5, kAt + 2 + 0x10)}));
}

TEST(Prologue, CallKeepsItsTarget) {
  // call +0x1000
  auto out = placed({0xe8, 0x00, 0x10, 0x00, 0x00});
  EXPECT_EQ(out, cat({{0xe8}, rel32(kBase + 5, kAt + 5 + 0x1000), {0xe9}, rel32(kBase + 10, kAt + 5)}));
}

TEST(Prologue, LoopAndJrcxzAreRefusedByName) {
  std::vector<uint8_t> code = {0xe3, 0x10, 0x90, 0x90, 0x90};
  code.resize(32, 0x90);
  auto t = relocate_prologue(code, kAt, "spin");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.error().kind, ErrorKind::unsupported);
  EXPECT_NE(t.error().message.find("spin"), std::string::npos) << t.error().message;
  EXPECT_NE(t.error().message.find("jrcxz"), std::string::npos) << t.error().message;
  code[0] = 0xe2;  // loop
  EXPECT_FALSE(relocate_prologue(code, kAt, "spin").ok());
}

TEST(Prologue, PlacementOutOfReachFails) {
  std::vector<uint8_t> code = {0x48, 0x8b, 0x05, 0x00, 0x01, 0x00, 0x00};
  code.resize(32, 0x90);
  auto t = relocate_prologue(code, kAt, "f");
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE(place_continuation(*t, kAt + (1ull << 33)).has_value());
}

TEST(DispatchThunk, ComparesTheMarkerAndBranches) {
  auto b = encode_dispatch_thunk(0x1000, -64, 7, 0x2000, 0x3000);
  ASSERT_TRUE(b.has_value());
  std::vector<uint8_t> got(b->begin(), b->end());
  auto want = cat({{0x64, 0x48, 0x81, 0x3c, 0x25, 0xc0, 0xff, 0xff, 0xff, 0x07, 0, 0, 0, 0x0f, 0x84},
                   rel32(0x1000 + 19, 0x2000), {0xe9}, rel32(0x1000 + 24, 0x3000)});
  EXPECT_EQ(got, want);
  EXPECT_FALSE(encode_dispatch_thunk(0x1000, -64, 1ull << 31, 0x2000, 0x3000).has_value());
}

}  // namespace
}  // namespace lg::x86
