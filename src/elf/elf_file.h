// ElfFile: a read-only ELF file opened through elfutils libelf. Every accessor is fallible and
// bounds-checked; nothing here aborts on a malformed file.
#pragma once

#include <gelf.h>
#include <libelf.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/fd.h"
#include "common/result.h"

namespace lg {

struct ElfSymbol {
  std::string name;
  uint64_t value = 0;    // st_value (a vaddr in ET_EXEC/ET_DYN, an offset in its section in ET_REL)
  uint64_t size = 0;
  uint8_t type = 0;      // STT_*
  uint8_t bind = 0;      // STB_*
  uint8_t visibility = 0;
  uint16_t shndx = 0;    // SHN_UNDEF for undefined
  size_t index = 0;      // index in its symbol table
  bool defined() const { return shndx != 0 /* SHN_UNDEF */; }
};

struct ElfSegment {
  uint32_t type = 0, flags = 0;  // PT_*, PF_*
  uint64_t offset = 0, vaddr = 0, filesz = 0, memsz = 0, align = 0;
};

struct ElfSection {
  size_t index = 0;
  std::string name;
  uint32_t type = 0;
  uint64_t flags = 0, addr = 0, offset = 0, size = 0, align = 0, entsize = 0;
  uint32_t link = 0, info = 0;
};

class ElfFile {
 public:
  // Opens and validates an ELF file (any class/machine; callers check what they need).
  static Result<ElfFile> open(const std::string& path);
  // Same, over bytes that the ElfFile keeps alive.
  static Result<ElfFile> from_bytes(std::vector<uint8_t> bytes, std::string name);

  ElfFile(ElfFile&&) noexcept;
  ElfFile& operator=(ElfFile&&) noexcept;
  ~ElfFile();

  const std::string& path() const { return path_; }
  Elf* raw() const { return elf_; }
  const GElf_Ehdr& header() const { return ehdr_; }
  bool is_x86_64() const;

  // GNU build-id as lower-case hex, nullopt when the file has none.
  std::optional<std::string> build_id() const;
  // DT_SONAME, nullopt when absent.
  std::optional<std::string> soname() const;

  std::vector<ElfSegment> segments() const;
  const std::vector<ElfSection>& sections() const { return sections_; }
  const ElfSection* section_by_name(std::string_view name) const;
  // The bytes of a section (empty for SHT_NOBITS). Error when out of the file's bounds.
  Result<std::span<const uint8_t>> section_data(size_t index) const;

  // The full symbol table: .symtab when present, otherwise .dynsym. Entry 0 is the null
  // symbol, so symbols()[i].index == i (what a relocation's r_sym indexes).
  const std::vector<ElfSymbol>& symbols() const { return symbols_; }
  // .dynsym only (exported/imported dynamic symbols).
  const std::vector<ElfSymbol>& dynamic_symbols() const { return dynsyms_; }
  bool has_symtab() const { return has_symtab_; }

  // Finds a defined symbol by name. sympos 0: exactly one definition must exist (an error that
  // says how many were found and that old_sympos selects one otherwise); N>=1: the Nth
  // definition in symbol-table order. Looks in .symtab (locals included), then .dynsym.
  Result<ElfSymbol> find_symbol(std::string_view name, uint64_t sympos = 0) const;

  // Bytes at a virtual address of the file image (ET_EXEC/ET_DYN), from the PT_LOAD that holds it.
  Result<std::vector<uint8_t>> read_vaddr(uint64_t vaddr, size_t len) const;

  // Maps a file offset to the vaddr the first PT_LOAD containing it gives it (to compute a
  // mapping's load bias: bias = mapping.lo - vaddr_of_offset(mapping.offset)).
  std::optional<uint64_t> vaddr_of_offset(uint64_t offset) const;

 private:
  ElfFile() = default;
  Result<void> load();

  std::string path_;
  UniqueFd fd_;
  std::vector<uint8_t> bytes_;
  Elf* elf_ = nullptr;
  GElf_Ehdr ehdr_{};
  std::vector<ElfSection> sections_;
  std::vector<ElfSymbol> symbols_, dynsyms_;
  bool has_symtab_ = false;
};

}  // namespace lg
