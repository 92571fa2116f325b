// Reading an ET_REL x86-64 patch object from a byte buffer, with <elf.h> only (the agent links
// libc only, so no libelf). Every offset, size and index is bounds-checked: the agent re-reads
// the file itself and never trusts the controller's parse.
#pragma once

#include <elf.h>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace lg::agent {

struct RelSection {
  std::string name;
  Elf64_Shdr hdr{};
  bool is_alloc() const { return (hdr.sh_flags & SHF_ALLOC) != 0; }
};

class RelObject {
 public:
  // Parses and validates [data] (which must outlive the RelObject). [label] names the file in
  // error messages.
  static Result<RelObject> parse(std::span<const uint8_t> data, std::string label);

  const std::string& label() const { return label_; }
  const std::vector<RelSection>& sections() const { return sections_; }
  const std::vector<Elf64_Sym>& symbols() const { return symbols_; }
  // The symbol's name ("" when unnamed); the section's name for STT_SECTION symbols.
  std::string_view symbol_name(size_t index) const;
  // The section index of a symbol, with SHN_XINDEX resolved.
  uint32_t symbol_section(size_t index) const { return sym_shndx_[index]; }
  // File bytes of a section (empty for SHT_NOBITS).
  std::span<const uint8_t> section_data(size_t index) const;
  // Relocations (SHT_RELA) that apply to section [index].
  const std::vector<Elf64_Rela>& relocations_for(size_t index) const { return relas_[index]; }
  // Index of the first section named [name], or -1.
  int find_section(std::string_view name) const;

 private:
  std::span<const uint8_t> data_;
  std::string label_;
  std::vector<RelSection> sections_;
  std::vector<Elf64_Sym> symbols_;
  std::vector<uint32_t> sym_shndx_;
  std::span<const uint8_t> strtab_;
  std::vector<std::vector<Elf64_Rela>> relas_;  // indexed by target section
};

}  // namespace lg::agent
