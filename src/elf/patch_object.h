// PatchObject: a patch object file (ET_REL x86-64 with a ".livegraft" root) read and validated on
// the controller side, before anything touches a process. Follows the R_X86_64_64 relocations
// of the metadata to find names, function arrays and new_func targets.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/fd.h"
#include "common/result.h"
#include "elf/rel_object.h"

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
  std::vector<uint8_t> new_code;  // the new_size bytes of the replacement, as in the file
};

// An undefined symbol of the patch bound to one definition of a name in the target object
// (struct livegraft_sym, layout version 2): resolved by (old_name, old_sympos), not by name.
struct PatchSym {
  std::string name;      // the patch's undefined symbol ("counter,2")
  std::string old_name;  // the target's symbol ("counter")
  uint64_t old_sympos = 0;
};

struct PatchTargetObject {
  std::optional<std::string> name;      // nullopt: the main executable
  std::optional<std::string> build_id;  // lower-case hex, nullopt: any
  std::vector<PatchFunc> funcs;
  std::vector<PatchSym> syms;           // empty in layout version 1
  const PatchSym* sym(std::string_view undefined_name) const {
    for (const PatchSym& s : syms)
      if (s.name == undefined_name) return &s;
    return nullptr;
  }
};

struct PatchUndefined {
  std::string name;
  bool weak = false;
};

struct PatchObject {
  std::string path;
  uint16_t version = 0;  // the layout version of the file (LIVEGRAFT_LAYOUT_VERSION_MIN..LIVEGRAFT_LAYOUT_VERSION)
  std::string name;
  uint32_t flags = 0;
  std::vector<PatchTargetObject> objects;
  // Undefined symbols the loader must resolve (the patch's imports), without duplicates.
  std::vector<PatchUndefined> undefined;
  // Relocation types used, for diagnostics.
  std::vector<uint32_t> relocation_types;
};

// A patch file opened once: every later step (validation, the agent's load) uses these bytes,
// never the path again.
struct PatchFile {
  std::string path;
  std::vector<uint8_t> bytes;
};

// Opens [path] with O_RDONLY|O_NONBLOCK|O_CLOEXEC (a FIFO cannot block us), refuses anything but
// a regular file of at most elf::kMaxPatchFile bytes, and reads it. Errors: not_found, bad_patch
// (not a regular file, too large), io.
Result<PatchFile> open_patch_file(const std::string& path);

// A sealed memfd holding [bytes] (F_SEAL_WRITE|SHRINK|GROW|SEAL): what the controller hands to
// the agent, so the agent loads exactly the bytes that were validated even if the file on disk
// is replaced or rewritten in place afterwards. Errors: io.
Result<UniqueFd> sealed_copy(std::span<const uint8_t> bytes, const std::string& name);

// Reads and validates a patch object: the one bounds-checked reader (elf::RelObject), the
// loader's checks (elf::check_loadable(): relocations, alignment, .eh_frame, TLS, IFUNC) and the
// metadata. Errors (ErrorKind::bad_patch or ::unsupported) name the file, and the
// section/symbol/relocation at fault:
//  - not ELF / truncated / not ELF64 x86-64 ET_REL; no or malformed .livegraft (magic, version,
//    size, counts, pointers without relocations, names not NUL-terminated inside their section);
//  - a patch name outside [A-Za-z0-9_.-]{1,64} or "." / ".."; zero objects; an object with zero funcs;
//  - a relocation type the agent's loader does not handle (see supported_relocation());
//  - a TLS symbol defined or referenced (STT_TLS), an IFUNC definition (STT_GNU_IFUNC), a COMMON
//    symbol; callbacks/states non-NULL (reserved in v1).
Result<PatchObject> read_patch_object(std::span<const uint8_t> bytes, const std::string& label);
// open_patch_file() and the above.
Result<PatchObject> read_patch_object(const std::string& path);

// The relocation types the agent's loader applies, from the list both share
// (src/x86/relocations.h, docs/patch-format.md). Only relocations that apply to SHF_ALLOC
// sections are checked (debug info is never loaded).
bool supported_relocation(uint32_t type);
const char* relocation_name(uint32_t type);

}  // namespace lg
