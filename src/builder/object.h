// The builder's in-memory model of one relocatable object (ET_REL x86-64): sections with their
// bytes and relocations, and the symbol table. Loaded once (load.h) and then annotated by the
// passes: correlate sets twins, compare sets statuses, include marks what goes into the patch.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lg::builder {

enum class Status { same, changed, added };  // added = NEW (no twin in the original)
const char* to_string(Status status);

struct Relocation {
  uint64_t offset = 0;  // in the section the relocations apply to
  uint32_t type = 0;    // R_X86_64_*
  size_t symbol = 0;    // index into Object::symbols
  int64_t addend = 0;
};

struct Symbol;

struct Section {
  size_t index = 0;
  std::string name;
  uint32_t type = 0;    // SHT_*
  uint64_t flags = 0;   // SHF_*
  uint64_t align = 1, entsize = 0, size = 0;
  uint32_t link = 0, info = 0;
  std::vector<uint8_t> data;           // empty for SHT_NOBITS
  std::vector<Relocation> relocations; // from the SHT_RELA section that targets this one
  size_t rela_index = 0;               // 0: none
  size_t section_symbol = 0;           // index of its STT_SECTION symbol, 0: none

  bool is_text() const;     // SHF_EXECINSTR
  bool is_writable() const; // SHF_WRITE
  bool is_strings() const;  // SHF_MERGE|SHF_STRINGS
  bool is_merge_constants() const;
  bool is_tls() const;
  bool is_alloc() const;
};

struct Symbol {
  size_t index = 0;
  std::string name;
  uint8_t type = 0, bind = 0, other = 0;  // STT_*, STB_*, st_other
  uint16_t shndx = 0;
  uint64_t value = 0, size = 0;

  // Annotations set by the passes.
  Symbol* twin = nullptr;        // correlated symbol in the other object
  Status status = Status::same;
  bool line_only = false;        // differs from its twin only in __LINE__ immediates
  Symbol* parent = nullptr;      // a `.cold` child's parent function
  std::vector<Symbol*> children; // a function's `.cold` children
  bool included = false;
  bool in_patched = false;       // belongs to the patched object

  bool defined() const;
  bool is_function() const;
  bool is_object() const;
  bool is_section() const;
  bool is_local() const;
};

struct Object {
  Object() = default;
  Object(Object&&) = default;             // the symbol index points into `symbols`: moved with it
  Object& operator=(Object&&) = default;
  Object(const Object&) = delete;         // (twins and the index point into this object)
  Object& operator=(const Object&) = delete;

  std::string path;
  std::string source_file;  // the STT_FILE symbol's name ("a.c"), empty when none
  std::vector<Section> sections;
  std::vector<Symbol> symbols;

  const Section* section_of(const Symbol& s) const;
  Section* section_of(const Symbol& s);
  // Defined symbols (functions, objects, labels; not sections/files) that live in a section,
  // in symbol-table order. Indexed once at load (index_symbols): resolving a section-symbol
  // relocation must not scan the whole symbol table (SQLite's amalgamation: ~10^5 relocations
  // against ~10^4 symbols).
  const std::vector<const Symbol*>& symbols_in(size_t section_index) const;
  void index_symbols();

 private:
  std::vector<std::vector<const Symbol*>> by_section_;
};

}  // namespace lg::builder
