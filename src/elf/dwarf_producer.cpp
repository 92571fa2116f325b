#include "elf/dwarf_producer.h"

#include <dwarf.h>
#include <elfutils/libdw.h>

#include <sstream>

namespace lg {

std::optional<std::string> producer_of(const ElfFile& elf, uint64_t vaddr) {
  Dwarf* dbg = dwarf_begin_elf(elf.raw(), DWARF_C_READ, nullptr);
  if (!dbg) return std::nullopt;
  std::optional<std::string> out;
  Dwarf_Die cu;
  if (dwarf_addrdie(dbg, vaddr, &cu) != nullptr) {
    Dwarf_Attribute attr;
    if (const char* p = dwarf_formstring(dwarf_attr(&cu, DW_AT_producer, &attr))) out = p;
  }
  dwarf_end(dbg);
  return out;
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
