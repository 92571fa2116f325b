// The running program's binary (the patch target): its GNU build-id, soname, full symbol table
// (locals included, with the source file each local belongs to) and code bytes. Used to bind
// the patch to the target, to compute old_sympos for duplicate local names, to check that every
// reference the patch leaves to the loader can be resolved, and to verify that the rebuilt
// original matches the code that is running.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/result.h"
#include "elf/debug_file.h"

namespace lg::builder {

struct TargetSymbol {
  std::string name;
  uint8_t type = 0, bind = 0;
  uint64_t value = 0, size = 0;
  std::string file;  // the STT_FILE that precedes a local symbol in .symtab ("a.c"), "" for globals
  // Which STT_FILE's run of locals it is in (1 for the first STT_FILE, 0 before any and for
  // globals): two files of one name are two groups.
  size_t group = 0;
};

struct TargetBinary {
  std::string path;
  std::optional<std::string> build_id;  // lower-case hex
  std::optional<std::string> soname;    // DT_SONAME (libraries); nullopt for executables
  bool has_symtab = false;              // a .symtab: the binary's own or its debug file's
  // The binary is stripped and its symbols come from a separate debug file (src/elf/debug_file.h):
  // where it was found and how ("build-id", ".gnu_debuglink", "--symbols", "debuginfod").
  std::string debug_file, debug_origin;
  std::vector<std::string> debug_tried;  // where a debug file was looked for (none found)
  // false when the target itself is a separate debug file (`--target prog.debug`: its code
  // sections are SHT_NOBITS): symbols and build-id, but no code to verify the rebuilt original.
  bool has_code = true;
  std::vector<TargetSymbol> symbols;    // defined symbols, .symtab order (or .dynsym)
  std::set<std::string> source_files;   // the STT_FILE names of .symtab (base names)
  std::set<std::string> imports;        // undefined .dynsym names (bound by the dynamic linker)
  // Defined .dynsym names, without a version: a variable of libc the binary holds by a copy
  // relocation (stderr, environ) is `stderr@GLIBC_2.2.5` in .symtab but `stderr` here.
  std::set<std::string> exports;

  struct Load { uint64_t vaddr, offset, filesz; };
  std::vector<Load> loads;
  std::vector<uint8_t> bytes;  // the whole file

  // Bytes at a virtual address, from the PT_LOAD that holds them.
  Result<std::vector<uint8_t>> read(uint64_t vaddr, uint64_t len) const;
};

// A stripped target (no .symtab) gets its symbols from its separate debug file, found like
// `livegraft apply` finds it: `debug.explicit_file` (--symbols), the build-id path under the
// debug roots ($LIVEGRAFT_DEBUG_ROOT or /usr/lib/debug), .gnu_debuglink, debuginfod when
// DEBUGINFOD_URLS is set. Without `debug`, those defaults.
Result<TargetBinary> load_target(const std::string& path, const DebugFileOptions* debug = nullptr);

struct Located {
  const TargetSymbol* symbol = nullptr;
  uint64_t sympos = 0;  // 0 when the name is unique, else 1-based position among same-named
  size_t count = 0;     // definitions of that name
};

// Finds the definition of `name` that belongs to `source_file` (the original object's STT_FILE)
// when several exist: for a local, among the locals that follow an STT_FILE of that name; when
// several files have that name, the one whose run of local functions and objects are all
// locals of the original object (`unit_locals`: their names), like kpatch's matching of a
// file's local symbols. Errors: not found (a stripped binary or another build), or ambiguous
// (the message lists the candidates: position, address, file).
Result<Located> locate(const TargetBinary& target, const std::string& name, const std::string& source_file,
                       bool local, const std::set<std::string>* unit_locals = nullptr);

}  // namespace lg::builder
