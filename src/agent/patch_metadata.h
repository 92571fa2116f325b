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

struct PatchMetadata {
  std::string name;
  uint32_t flags = 0;
  std::optional<std::string> object_name;  // nullopt: the main executable
  std::optional<std::string> build_id;
  std::vector<PatchFuncMeta> funcs;
};

// Errors: bad_patch (no/short section, bad magic, pointers outside the patch, a new_func that is
// not patch code), unsupported (layout version, more than one object, callbacks or states).
Result<PatchMetadata> read_patch_metadata(const LoadedObject& obj);

}  // namespace lg::agent
