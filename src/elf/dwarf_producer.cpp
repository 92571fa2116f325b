#include "elf/dwarf_producer.h"

#include <dwarf.h>
#include <elfutils/libdw.h>

#include <sstream>

namespace lg {

CompileUnits::CompileUnits(const ElfFile& elf) : dbg_(dwarf_begin_elf(elf.raw(), DWARF_C_READ, nullptr)) {}

CompileUnits::~CompileUnits() {
  if (dbg_) dwarf_end(dbg_);
}

std::optional<uint64_t> CompileUnits::unit_of(uint64_t vaddr) const {
  if (!dbg_) return std::nullopt;
  Dwarf_Die cu;
  if (dwarf_addrdie(dbg_, vaddr, &cu) == nullptr) return std::nullopt;
  return dwarf_dieoffset(&cu);
}

std::optional<std::string> CompileUnits::producer_of(uint64_t vaddr) const {
  if (!dbg_) return std::nullopt;
  Dwarf_Die cu;
  if (dwarf_addrdie(dbg_, vaddr, &cu) == nullptr) return std::nullopt;
  Dwarf_Attribute attr;
  const char* p = dwarf_formstring(dwarf_attr(&cu, DW_AT_producer, &attr));
  if (!p) return std::nullopt;
  return std::string(p);
}

bool producer_is_lto(const std::optional<std::string>& producer) {
  return producer && producer->rfind("GNU GIMPLE", 0) == 0;
}

bool producer_may_use_ipa_ra(const std::optional<std::string>& producer) {
  if (!producer) return true;
  if (producer->rfind("GNU ", 0) != 0) return producer->find("clang") == std::string::npos;  // clang has no IPA-RA by default
  std::istringstream in(*producer);
  std::string word, level = "-O0";
  bool no_ipa_ra = false, ipa_ra = false;
  while (in >> word) {
    if (word.rfind("-O", 0) == 0) level = word;
    if (word == "-fno-ipa-ra") no_ipa_ra = true, ipa_ra = false;
    if (word == "-fipa-ra") ipa_ra = true, no_ipa_ra = false;
  }
  if (no_ipa_ra) return false;
  if (ipa_ra) return true;
  return level == "-O2" || level == "-O3" || level == "-Os" || level == "-Ofast";
}

}  // namespace lg
