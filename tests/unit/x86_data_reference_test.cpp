// Far external data from -fPIE patch code (src/x86/data_reference.h): bytes in, bytes out.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "x86/data_reference.h"

namespace lg::x86 {
namespace {

TEST(DataReference, ClassifiesLeaLoadAndGenericInstructions) {
  // 0: mov stderr(%rip), %rdi   7: lea .LC0(%rip), %rsi   14: movl $0, x(%rip)   24: push x(%rip)
  std::vector<uint8_t> code = {0x48, 0x8b, 0x3d, 0, 0, 0, 0, 0x48, 0x8d, 0x35, 0, 0, 0, 0,
                               0xc7, 0x05, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0x35, 0, 0, 0, 0};
  std::string why;
  auto load = classify_data_reference(code, {0}, 3, -4, why);
  ASSERT_TRUE(load) << why;
  EXPECT_EQ(load->kind, DataRefKind::load);
  EXPECT_EQ(load->insn, 0u);
  EXPECT_EQ(load->len, 7);
  auto lea = classify_data_reference(code, {0}, 10, -4, why);
  ASSERT_TRUE(lea) << why;
  EXPECT_EQ(lea->kind, DataRefKind::lea);
  auto store = classify_data_reference(code, {0}, 16, -8, why);
  ASSERT_TRUE(store) << why;
  EXPECT_EQ(store->kind, DataRefKind::generic);
  EXPECT_EQ(store->scratch, 11);  // r11: movl $0, (%r11) (the effective address is sym + 0)
  EXPECT_EQ(store->body, (std::vector<uint8_t>{0x41, 0xc7, 0x03, 0, 0, 0, 0}));
  EXPECT_FALSE(classify_data_reference(code, {0}, 26, -4, why));  // push uses %rsp
  EXPECT_NE(why.find("push"), std::string::npos) << why;
}

TEST(DataReference, LeaBecomesALoadFromTheSlotInPlace) {
  std::vector<uint8_t> insn = {0x48, 0x8d, 0x35, 0, 0, 0, 0};  // lea sym(%rip), %rsi at 0x1000
  uint8_t thunk[kDataRefThunkSize] = {};
  bool used = true;
  ASSERT_TRUE(rewrite_data_ref(insn.data(), insn.size(), 0x1000, DataRefKind::lea, -4, 0x3000, thunk, 0x2000, used));
  EXPECT_FALSE(used);
  int32_t d = 0x3000 - 0x1007;
  std::vector<uint8_t> want = {0x48, 0x8b, 0x35, 0, 0, 0, 0};
  std::memcpy(&want[3], &d, 4);
  EXPECT_EQ(insn, want);  // mov slot(%rip), %rsi
}

TEST(DataReference, LoadJumpsToAThunkThatDereferencesTheSlot) {
  std::vector<uint8_t> insn = {0x8b, 0x05, 0, 0, 0, 0};  // mov x(%rip), %eax at 0x1000
  uint8_t thunk[kDataRefThunkSize] = {};
  bool used = false;
  ASSERT_TRUE(rewrite_data_ref(insn.data(), insn.size(), 0x1000, DataRefKind::load, -4, 0x3000, thunk, 0x2000, used));
  EXPECT_TRUE(used);
  EXPECT_EQ(insn[0], 0xe9);  // jmp thunk, then int3
  EXPECT_EQ(insn[5], 0xcc);
  // mov slot(%rip), %rax; mov 0(%rax), %eax; jmp 0x1006
  EXPECT_EQ(std::vector<uint8_t>(thunk, thunk + 3), (std::vector<uint8_t>{0x48, 0x8b, 0x05}));
  EXPECT_EQ(std::vector<uint8_t>(thunk + 7, thunk + 14), (std::vector<uint8_t>{0x40, 0x8b, 0x80, 0, 0, 0, 0}));
  int32_t back;
  std::memcpy(&back, thunk + 15, 4);
  EXPECT_EQ(0x2000 + 19 + back, 0x1006);
}

}  // namespace
}  // namespace lg::x86
