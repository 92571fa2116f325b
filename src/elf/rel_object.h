// RelObject: an ET_REL x86-64 object (a patch) read from a byte buffer, with <elf.h> only. The
// ONE reader of patch files: the controller validates with it before anything touches a process
// and the agent (libc only, no libelf) loads with it. Modelled on LLVM's Object/ELF.h: parse()
// checks every offset, size, index and string once, so the accessors below cannot read outside
// the buffer. Errors are ErrorKind::bad_patch (or ::unsupported for well-formed input livegraft
// does not handle) and name the file and the section or symbol at fault.
#pragma once

#include <elf.h>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace lg::elf {

inline constexpr uint64_t kPageSize = 4096;
// A patch object larger than this is refused before it is read (no compiler makes one).
inline constexpr uint64_t kMaxPatchFile = 256ull << 20;

struct RelSection {
  std::string name;
  Elf64_Shdr hdr{};
  bool is_alloc() const { return (hdr.sh_flags & SHF_ALLOC) != 0; }
  bool is_exec() const { return (hdr.sh_flags & SHF_EXECINSTR) != 0; }
};

class RelObject {
 public:
  // Parses and validates [data] (which must outlive the RelObject). [label] names the file in
  // error messages. Refused (bad_patch): not ELF64 LE x86-64 ET_REL; e_ehsize / e_shentsize
  // other than ELF64's; a section header table, section, string table, symbol or relocation
  // outside the file or the tables; a name not NUL-terminated; an alignment that is not a power
  // of two; a section whose name says relocations (".rela.*", ".rel.*") or whose SHF_INFO_LINK
  // flag says so but whose type is not SHT_RELA; an allocated section of a type the loader
  // cannot place (SHT_RELA, SHT_SYMTAB, ...); zero or several symbol tables; a symbol in a
  // section that does not exist or outside its section; SHT_REL relocations.
  static Result<RelObject> parse(std::span<const uint8_t> data, std::string label);

  const std::string& label() const { return label_; }
  std::span<const uint8_t> bytes() const { return data_; }
  const std::vector<RelSection>& sections() const { return sections_; }
  const std::vector<Elf64_Sym>& symbols() const { return symbols_; }
  // The symbol's name ("" when unnamed); the section's name for STT_SECTION symbols.
  // [index] < symbols().size().
  std::string_view symbol_name(size_t index) const;
  // The section index of a symbol, with SHN_XINDEX resolved (< sections().size(), or SHN_UNDEF,
  // SHN_ABS, SHN_COMMON).
  uint32_t symbol_section(size_t index) const { return sym_shndx_[index]; }
  bool symbol_defined(size_t index) const { return sym_shndx_[index] != SHN_UNDEF; }
  // File bytes of a section (empty for SHT_NOBITS and SHT_NULL). [index] < sections().size().
  std::span<const uint8_t> section_data(size_t index) const;
  // Relocations (SHT_RELA) that apply to section [index], in file order; every r_sym is a valid
  // symbol index. [index] < sections().size().
  const std::vector<Elf64_Rela>& relocations_for(size_t index) const { return relas_[index]; }
  // The SHT_RELA section holding relocations for [index], or 0.
  size_t relocation_section_for(size_t index) const { return rela_sec_[index]; }
  // Index of the first section named [name], or -1.
  int find_section(std::string_view name) const;
  // "symbol 'x'" / "section .text" / "symbol #3", for messages.
  std::string describe_symbol(size_t index) const;

 private:
  std::span<const uint8_t> data_;
  std::string label_;
  std::vector<RelSection> sections_;
  std::vector<Elf64_Sym> symbols_;
  std::vector<uint32_t> sym_shndx_;
  std::span<const uint8_t> strtab_;
  std::vector<std::vector<Elf64_Rela>> relas_;  // indexed by target section
  std::vector<size_t> rela_sec_;                 // target section -> its SHT_RELA section
};

}  // namespace lg::elf
