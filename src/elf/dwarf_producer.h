// Compilation units of an ELF file's DWARF: which unit holds an address, and what produced it
// (GCC records its command line in DW_AT_producer by default, -grecord-gcc-switches).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "elf/elf_file.h"

struct Dwarf;

namespace lg {

class CompileUnits {
 public:
  explicit CompileUnits(const ElfFile& elf);  // no DWARF: every query answers nullopt
  ~CompileUnits();
  CompileUnits(const CompileUnits&) = delete;
  CompileUnits& operator=(const CompileUnits&) = delete;

  bool has_dwarf() const { return dbg_ != nullptr; }
  // The unit containing [vaddr] (its DIE offset), nullopt when unknown.
  std::optional<uint64_t> unit_of(uint64_t vaddr) const;
  // The producer string of the unit containing [vaddr].
  std::optional<std::string> producer_of(uint64_t vaddr) const;

 private:
  Dwarf* dbg_ = nullptr;
};

// Whether GCC's interprocedural register allocation may have been used for code built by
// [producer]: GCC at -O2/-O3/-Os/-Ofast without -fno-ipa-ra. Unknown producers count as yes.
bool producer_may_use_ipa_ra(const std::optional<std::string>& producer);
// Whether [producer] is a link-time optimisation unit (GCC: "GNU GIMPLE"): it spans files.
bool producer_is_lto(const std::optional<std::string>& producer);

}  // namespace lg
