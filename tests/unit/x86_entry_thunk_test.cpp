// Entry thunks (src/x86/entry_thunk.h): bytes and CFI for a preserved register set.
#include <gtest/gtest.h>

#include <vector>

#include "x86/entry_thunk.h"

namespace lg::x86 {
namespace {

TEST(EntryThunk, SavesRestoresAndKeepsTheCallAligned) {
  constexpr ThunkRegs rcx = 1u << 1, rdx = 1u << 2, r9 = 1u << 9, xmm0 = 1u << 16, rax = 1u << 0;
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

}  // namespace
}  // namespace lg::x86
