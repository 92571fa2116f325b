// The object diff: ORIG.o and PATCHED.o (one translation unit, compiled with
// -ffunction-sections -fdata-sections) in, the functions to replace and what the patch
// needs out. Runs the passes load -> correlate -> compare -> include; emit.h writes the object.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "builder/diagnostics.h"
#include "builder/include.h"
#include "builder/object.h"
#include "builder/target.h"
#include "common/result.h"

namespace lg::builder {

struct FunctionChange {
  std::string name;       // the original's (target's) name
  Status status = Status::changed;
  uint64_t sympos = 0;    // old_sympos: 0 = unique name in the target (or no target given)
  bool local = false;     // a static function
  // CHANGED: why it is in the patch ("inlines X (the original calls it)", "calls Y, which the
  // original does not", "differs in its own code from +0x1c"), most telling first (explain.h).
  std::vector<std::string> reasons;
};

struct DiffResult {
  std::vector<FunctionChange> functions;  // CHANGED then NEW, in symbol-table order
  std::vector<std::string> line_only;     // functions that differ only in __LINE__ values
  std::vector<std::string> new_data;      // NEW variables the patch defines
  std::vector<std::string> externals;     // names the loader resolves in the target
  // Externals with several definitions in the target, bound to one: name -> its old_sympos (the
  // definition of the original object's own file for a static). The patch names them "name,N"
  // with a livegraft_sym entry (emit.h).
  std::map<std::string, uint64_t> bound;
  // CHANGED functions whose address the patch's code or data keeps (a callback it registers, a
  // table): name -> old_sympos. Such a reference takes the original's address ("name,N" with a
  // livegraft_sym, N may be 0): while the patch is applied its entry leads to the newest
  // version, and after a revert it is the original again, never freed code (emit.h).
  std::map<std::string, uint64_t> originals;
  // NEW functions whose address the patch's code or data keeps: the program may hold it after
  // a revert, so the patch is flagged LIVEGRAFT_PATCH_KEEP_CODE (its code stays mapped).
  std::set<std::string> kept_new;
  std::vector<std::string> warnings;
  // Wall time of each pass (load, correlate, compare, include, verify), seconds.
  std::vector<std::pair<std::string, double>> timings;

  // For emit: the loaded objects (heap-allocated so the passes' pointers stay valid).
  std::unique_ptr<Object> orig, patched;
  Inclusion inclusion;

  bool nothing_to_patch() const;
};

struct DiffOptions {
  std::string orig_path, patched_path;
  // The running program's binary, when known: enables old_sympos, checks that every name left
  // to the loader exists and is unambiguous, and that the original object's changed functions
  // have the same code in the target (a rebuild with other flags is refused, not patched).
  const TargetBinary* target = nullptr;
};

// Errors: any refusal (ErrorKind::unsupported; the message lists every refused symbol and why),
// I/O or malformed input (not_found, bad_patch), a target mismatch (ErrorKind::mismatch).
Result<DiffResult> diff_objects(const DiffOptions& options);

}  // namespace lg::builder
