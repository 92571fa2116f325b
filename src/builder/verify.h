// Checks against the target binary: the original object's code must be the code that runs.
#pragma once

#include <string_view>

#include "builder/object.h"
#include "builder/target.h"
#include "common/result.h"

namespace lg::builder {

// The end of every verification refusal; `livegraft build` looks for it to tell "the rebuilt
// original is not what runs" from other refusals.
inline constexpr std::string_view kTargetBuiltDifferently = "the target was built from other sources, flags or compiler";

// Compares function `f` of the original object with `in_target` byte by byte, skipping the
// bytes relocations fill in (and the opcode bytes a linker may relax for GOTPCRELX/PLT32).
// ErrorKind::mismatch names the function and the first differing offset.
Result<void> verify_function(const Object& orig, const Symbol& f, const TargetBinary& target,
                             const TargetSymbol& in_target);

}  // namespace lg::builder
