// The __LINE__ tolerance on byte arrays: `mov $line, %edx; ...; call __assert_fail`.
#include <gtest/gtest.h>

#include <vector>

#include "builder/line_change.h"

using namespace lg::builder;

namespace {

// test %edi,%edi; jle +4; lea (%rdi,%rdi),%eax; ret; push %rax; mov $LINE,%edx; call rel32
std::vector<uint8_t> assert_like(uint8_t line, uint8_t reg_modrm = 0xba) {
  return {0x85, 0xff, 0x7e, 0x04, 0x8d, 0x04, 0x3f, 0xc3, 0x50, reg_modrm, line, 0, 0, 0, 0xe8, 0, 0, 0, 0};
}

const std::map<uint64_t, std::string> kAssertCall{{15, "__assert_fail"}};

}  // namespace

TEST(BuilderLineChange, LineImmediateBeforeAssertIsTolerated) {
  EXPECT_TRUE(differs_only_in_line_numbers(assert_like(3), assert_like(6), kAssertCall));
}

TEST(BuilderLineChange, IdenticalCodeIsNotALineChange) {
  EXPECT_FALSE(differs_only_in_line_numbers(assert_like(3), assert_like(3), kAssertCall));
}

TEST(BuilderLineChange, ImmediateBeforeAnOrdinaryCallIsARealChange) {
  const std::map<uint64_t, std::string> plain{{15, "set_limit"}};
  EXPECT_FALSE(differs_only_in_line_numbers(assert_like(3), assert_like(6), plain));
}

TEST(BuilderLineChange, ImmediateIntoANonArgumentRegisterIsARealChange) {
  // 0xb8 = mov $imm,%eax (the return value register, not an argument).
  EXPECT_FALSE(differs_only_in_line_numbers(assert_like(3, 0xb8), assert_like(6, 0xb8), kAssertCall));
}

TEST(BuilderLineChange, DifferentSizesAreARealChange) {
  auto longer = assert_like(6);
  longer.push_back(0xc3);
  EXPECT_FALSE(differs_only_in_line_numbers(assert_like(3), longer, kAssertCall));
}

TEST(BuilderLineChange, KnownLineTakingCallees) {
  EXPECT_TRUE(line_number_callee("__assert_fail"));
  EXPECT_TRUE(line_number_callee("__fprintf_chk"));
  EXPECT_TRUE(line_number_callee("g_assertion_message_expr"));
  EXPECT_TRUE(line_number_callee("err"));
  EXPECT_FALSE(line_number_callee("interrupt_handler"));
  EXPECT_FALSE(line_number_callee("compute"));
}
