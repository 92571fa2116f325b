// ApplyPlan: everything checked and resolved about applying a patch object to a process, before
// the process is touched: the target object (and its build-id), every replaced function (its
// address, size, the 5 bytes the jump replaces, patchability) and every import of the patch.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/remote.h"
#include "common/result.h"
#include "controller/process_image.h"
#include "elf/patch_object.h"
#include "protocol/protocol.h"
#include "x86/data_reference.h"
#include "x86/entry_thunk.h"

namespace lg {

struct PlannedFunc {
  std::string old_name;
  uint64_t old_sympos = 0;
  RemoteAddr addr;         // the original function
  uint64_t size = 0;
  RemoteAddr jump_addr;    // after endbr64
  std::vector<uint8_t> orig_bytes;  // the 5 bytes at jump_addr in the file
  std::vector<RemoteRange> extra_ranges;  // its .cold/.part pieces
  // Registers an entry thunk must preserve for the original's callers (GCC -fipa-ra,
  // src/x86/entry_thunk.h); empty when the replacement is entered directly.
  x86::ThunkRegs preserve;
};

struct ApplyPlan {
  PatchObject patch;
  // The validated bytes of the patch file in a sealed memfd: the agent loads from this
  // descriptor (sent with the load request), never from the path (docs/agent-protocol.md).
  UniqueFd patch_fd;
  std::string object_name;  // "" for the main executable
  std::string object_path;
  RemoteRange object_range;
  std::string build_id;
  std::vector<PlannedFunc> funcs;
  nlohmann::json symbols = nlohmann::json::object();  // name -> address
  std::vector<std::string> dlsym;                     // IFUNC imports
  // PC-relative references to data of other objects that the loader rewrites when out of
  // reach (src/x86/data_reference.h).
  std::vector<x86::DataRef> data_refs;

  // The original code no thread may be running for the switch (functions and their pieces).
  std::vector<RemoteRange> original_ranges() const;
  protocol::LoadRequest load_request(const std::string& absolute_path) const;
};

struct PlanOptions {
  // `--symbols FILE`: the separate debug file of the target object (src/elf/debug_file.h), for
  // a stripped object whose debug file is not where the lookup finds it.
  std::string symbols_file;
};

// Reads the patch (opening it once: elf/patch_object.h, open_patch_file()) and checks it against process [pid] without any ptrace: target object
// mapped, build-id equal, every function found (sympos), patchable, and its code in memory
// equal to the file (or already redirected by livegraft: [redirected] are jump addresses the
// agent reports), every import resolvable. Errors name what is wrong.
Result<ApplyPlan> plan_apply(pid_t pid, const std::string& patch_path, const std::vector<RemoteAddr>& redirected,
                             const PlanOptions& options = {});

}  // namespace lg
