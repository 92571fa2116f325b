#include <gtest/gtest.h>

#include "elf/dwarf_producer.h"

extern "C" __attribute__((noinline, used)) int lg_producer_probe(int x) { return x + 1; }

namespace lg {
namespace {

TEST(DwarfProducer, IpaRaOnlyForGccAtO2AndAbove) {
  EXPECT_TRUE(producer_may_use_ipa_ra(std::string("GNU C17 12.2.0 -mtune=generic -march=x86-64 -g -O2")));
  EXPECT_TRUE(producer_may_use_ipa_ra(std::string("GNU C++20 12.2.0 -O3 -g")));
  EXPECT_TRUE(producer_may_use_ipa_ra(std::string("GNU C17 12.2.0 -Os")));
  EXPECT_FALSE(producer_may_use_ipa_ra(std::string("GNU C17 12.2.0 -g -O2 -fno-ipa-ra")));
  EXPECT_TRUE(producer_may_use_ipa_ra(std::string("GNU C17 12.2.0 -O1 -fipa-ra")));
  EXPECT_FALSE(producer_may_use_ipa_ra(std::string("GNU C17 12.2.0 -g")));
  EXPECT_FALSE(producer_may_use_ipa_ra(std::string("GNU C17 12.2.0 -O1")));
  EXPECT_FALSE(producer_may_use_ipa_ra(std::string("GNU C17 12.2.0 -O2 -O0")));  // the last -O wins
  EXPECT_FALSE(producer_may_use_ipa_ra(std::string("Debian clang version 14.0.6")));
  EXPECT_TRUE(producer_may_use_ipa_ra(std::nullopt));  // no DWARF: assume the worst
}

TEST(DwarfProducer, ReadsTheProducerOfThisTestsOwnCode) {
  auto elf = ElfFile::open("/proc/self/exe");
  ASSERT_TRUE(elf.ok());
  auto sym = elf->find_symbol("lg_producer_probe");
  ASSERT_TRUE(sym.ok()) << sym.error().message;
  CompileUnits units(*elf);
  auto producer = units.producer_of(sym->value);
  if (!producer) GTEST_SKIP() << "this test was built without debug information";
  EXPECT_EQ(producer->rfind("GNU C++", 0), 0u) << *producer;
  EXPECT_FALSE(producer_is_lto(producer));
  // This function and the test body below share a unit; a libstdc++-free libc address has none.
  auto here = units.unit_of(sym->value);
  ASSERT_TRUE(here.has_value());
  auto body = elf->find_symbol("_ZN2lg12_GLOBAL__N_142DwarfProducer_ReadsTheProducerOfThisTestsOwnCode_Test8TestBodyEv");
  if (body.ok()) {
    auto body_unit = units.unit_of(body->value);
    ASSERT_TRUE(body_unit.has_value());
    EXPECT_EQ(*body_unit, *here);
  }
}

}  // namespace
}  // namespace lg
