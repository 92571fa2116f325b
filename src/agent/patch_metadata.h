// The patch's `.livegraft` root (include/livegraft/patch.h), read from the loaded image after
// relocation, when its pointers are real. Every pointer must point inside the loaded patch.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "agent/loader.h"
#include "common/result.h"

namespace lg::agent {

struct PatchFuncMeta {
  std::string old_name;
  uint64_t old_sympos = 0;
  uint64_t new_func = 0;  // run-time address, inside the patch's code
};

// An undefined symbol of the patch bound to one definition in the target (livegraft_sym, layout
// version 2); the controller resolved it by (old_name, old_sympos) and sent its address under
// `name` with the load request.
struct PatchSymMeta {
  std::string name, old_name;
  uint64_t old_sympos = 0;
};

struct PatchMetadata {
  uint16_t version = 0;
  std::string name;
  uint32_t flags = 0;
  std::optional<std::string> object_name;  // nullopt: the main executable
  std::optional<std::string> build_id;
  std::vector<PatchFuncMeta> funcs;
  std::vector<PatchSymMeta> syms;
};

// Errors: bad_patch (no/short section, bad magic, pointers outside the patch, a new_func that is
// not patch code), unsupported (layout version outside 1..2, more than one object, callbacks or states).
Result<PatchMetadata> read_patch_metadata(const LoadedObject& obj);

}  // namespace lg::agent
