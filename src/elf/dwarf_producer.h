// What compiled a function: the DW_AT_producer of its compilation unit (GCC records its command
// line options there by default, -grecord-gcc-switches).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "elf/elf_file.h"

namespace lg {

// The producer string of the compilation unit containing [vaddr], nullopt without DWARF.
std::optional<std::string> producer_of(const ElfFile& elf, uint64_t vaddr);

// Whether GCC's interprocedural register allocation may have been used for code built by
// [producer]: GCC at -O2/-O3/-Os/-Ofast without -fno-ipa-ra. Unknown producers count as yes.
bool producer_may_use_ipa_ra(const std::optional<std::string>& producer);

}  // namespace lg
