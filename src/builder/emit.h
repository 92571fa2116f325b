// Pass 5: write the patch object, an ET_REL x86-64 file with libelf:
//  - the copied sections of every part (one part per changed translation unit), their RELA
//    sections rewritten to the new symbol table, and a .eh_frame for the copied code;
//  - defined symbols under the original's names; references to the original as undefined
//    global symbols named like the original's symbol (the controller resolves them in the
//    target, local symbols included); a global defined by one part satisfies the others; a
//    reference to a name with several definitions in the target (a header's static, one copy
//    per file) as the undefined symbol "name,N" bound by a livegraft_sym to definition N, the
//    one of the part's own file (DiffResult::bound); a kept address of a replaced function (a
//    callback registered, a table: DiffResult::originals) as "name,N" too (N may be 0), bound
//    to the original, whose entry the patch redirects;
//  - the ".livegraft" root (include/livegraft/patch.h, one struct livegraft_patch) and, in
//    ".livegraft.meta", the object, function and bound-symbol arrays and the strings, all through
//    R_X86_64_64 relocations.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "builder/diff.h"
#include "common/result.h"

namespace lg::builder {

struct PatchMetadata {
  std::string name;                       // [A-Za-z0-9_.-]{1,64}
  std::optional<std::string> object_name; // nullopt: the main executable; else a soname/path
  std::optional<std::string> build_id;    // lower-case hex, nullopt: any build
  bool immediate = false;                 // LIVEGRAFT_PATCH_IMMEDIATE (`livegraft build --immediate-ok`)
};

// A valid patch name from any string (a file name): other characters become '-', cut to 64.
std::string sanitize_patch_name(const std::string& raw);

// Errors: nothing to patch (no CHANGED function in any part, ErrorKind::invalid_argument), two
// parts defining one global name (ErrorKind::unsupported), I/O.
Result<void> emit_patch_object(const std::vector<const DiffResult*>& parts, const PatchMetadata& meta,
                               const std::string& out_path);

}  // namespace lg::builder
