// One relocation at a time: bytes in, bytes out, and the overflow checks.
#include <elf.h>
#include <gtest/gtest.h>

#include <array>

#include "agent/relocate.h"

using namespace lg;
using namespace lg::agent;

namespace {

std::array<uint8_t, 8> run(uint32_t type, uint64_t P, uint64_t S, int64_t A, uint64_t G = 0, uint64_t GOT = 0, bool* ok = nullptr) {
  std::array<uint8_t, 8> buf;
  buf.fill(0xaa);
  auto r = apply_relocation({type, buf.data(), P, S, A, G, GOT});
  if (ok) *ok = r.ok();
  return buf;
}

TEST(RelocateTest, Pc32AndPlt32AreSAPlusAddendMinusP) {
  auto b = run(R_X86_64_PC32, 0x1000, 0x2000, -4);
  EXPECT_EQ(b, (std::array<uint8_t, 8>{0xfc, 0x0f, 0, 0, 0xaa, 0xaa, 0xaa, 0xaa}));
  b = run(R_X86_64_PLT32, 0x2000, 0x1000, -4);
  EXPECT_EQ(b, (std::array<uint8_t, 8>{0xfc, 0xef, 0xff, 0xff, 0xaa, 0xaa, 0xaa, 0xaa}));
}

TEST(RelocateTest, Pc32OverflowIsAnErrorAndWritesNothing) {
  bool ok = true;
  auto b = run(R_X86_64_PC32, 0x1000, 0x1000 + (1ull << 31) + 4, -4, 0, 0, &ok);
  EXPECT_FALSE(ok);
  EXPECT_EQ(b[0], 0xaa);
  ok = false;
  run(R_X86_64_PC32, 0x1000, 0x1000 + (1ull << 31) + 3, -4, 0, 0, &ok);
  EXPECT_TRUE(ok) << "INT32_MAX exactly still fits";
}

TEST(RelocateTest, AbsoluteForms) {
  auto b = run(R_X86_64_64, 0, 0x1122334455667788, 0x10);
  EXPECT_EQ(b, (std::array<uint8_t, 8>{0x98, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11}));
  bool ok = true;
  run(R_X86_64_32, 0, 0x100000000, 0, 0, 0, &ok);
  EXPECT_FALSE(ok);
  b = run(R_X86_64_32S, 0, static_cast<uint64_t>(-16), 0, 0, 0, &ok);
  EXPECT_TRUE(ok);
  EXPECT_EQ(b, (std::array<uint8_t, 8>{0xf0, 0xff, 0xff, 0xff, 0xaa, 0xaa, 0xaa, 0xaa}));
  run(R_X86_64_32S, 0, 0x80000000, 0, 0, 0, &ok);
  EXPECT_FALSE(ok);
}

TEST(RelocateTest, GotFormsUseTheSlot) {
  auto b = run(R_X86_64_REX_GOTPCRELX, 0x1000, 0xdead0000, -4, /*G=*/0x1100);
  EXPECT_EQ(b, (std::array<uint8_t, 8>{0xfc, 0x00, 0, 0, 0xaa, 0xaa, 0xaa, 0xaa}));
  b = run(R_X86_64_GOTOFF64, 0, 0x5010, 0, 0, /*GOT=*/0x5000);
  EXPECT_EQ(b, (std::array<uint8_t, 8>{0x10, 0, 0, 0, 0, 0, 0, 0}));
}

TEST(RelocateTest, ClassificationRefusesTlsAndUnknown) {
  EXPECT_EQ(classify_relocation(R_X86_64_TPOFF32), RelocClass::tls);
  EXPECT_EQ(classify_relocation(R_X86_64_GOTTPOFF), RelocClass::tls);
  EXPECT_EQ(classify_relocation(R_X86_64_SIZE32), RelocClass::unknown);
  EXPECT_EQ(classify_relocation(R_X86_64_PLT32), RelocClass::supported);
  EXPECT_STREQ(relocation_name(R_X86_64_GOTPCRELX), "R_X86_64_GOTPCRELX");
  bool ok = true;
  run(R_X86_64_SIZE32, 0, 0, 0, 0, 0, &ok);
  EXPECT_FALSE(ok);
}

}  // namespace
