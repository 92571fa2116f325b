// PatchObject: a patch object file (ET_REL x86-64 with a ".livegraft" root) read and validated on
// the controller side, before anything touches a process. Follows the R_X86_64_64 relocations
// of the metadata to find names, function arrays and new_func targets.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "elf/elf_file.h"

namespace lg {

struct PatchFunc {
  std::string old_name;
  uint64_t old_sympos = 0;
  // Where new_func points inside the patch object: a section and an offset, plus the name and
  // size of the function symbol that covers it (size 0 when no symbol covers it: refused).
  size_t new_section = 0;
  uint64_t new_offset = 0;
  std::string new_symbol;
  uint64_t new_size = 0;
};

struct PatchTargetObject {
  std::optional<std::string> name;      // nullopt: the main executable
  std::optional<std::string> build_id;  // lower-case hex, nullopt: any
  std::vector<PatchFunc> funcs;
};

struct PatchUndefined {
  std::string name;
  bool weak = false;
};

struct PatchObject {
  std::string path;
  std::string name;
  uint32_t flags = 0;
  std::vector<PatchTargetObject> objects;
  // Undefined symbols the loader must resolve (the patch's imports), without duplicates.
  std::vector<PatchUndefined> undefined;
  // Relocation types used, for diagnostics.
  std::vector<uint32_t> relocation_types;
};

// Reads and validates a patch object. Errors (ErrorKind::bad_patch or ::unsupported) name the
// file, and the section/symbol/relocation at fault:
//  - not ELF / truncated / not ELF64 x86-64 ET_REL; no or malformed .livegraft (magic, version,
//    size, counts, pointers without relocations, names not NUL-terminated inside their section);
//  - a patch name outside [A-Za-z0-9_.-]{1,64}; zero objects; an object with zero funcs;
//  - a relocation type the agent's loader does not handle (see supported_relocation());
//  - a TLS symbol defined or referenced (STT_TLS), an IFUNC definition (STT_GNU_IFUNC),
//    SHT_GROUP-less COMDAT issues are fine; callbacks/states non-NULL (reserved in v1).
Result<PatchObject> read_patch_object(const std::string& path);

// The relocation types the agent's loader applies, from the list both share
// (src/x86/relocations.h, docs/patch-format.md). Only relocations that apply to SHF_ALLOC
// sections are checked (debug info is never loaded).
bool supported_relocation(uint32_t type);
const char* relocation_name(uint32_t type);

}  // namespace lg
