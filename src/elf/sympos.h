// old_sympos, the kernel's rule for choosing among definitions of one name (klp_find_object_symbol;
// docs/patch-format.md): the builder computes it, the controller applies it, with these functions.
// Header-only (the builder does not link lg_elf).
#pragma once

#include <elf.h>

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/result.h"

namespace lg {

// Whether a symbol takes part in the count: defined, and neither a section nor a file symbol.
constexpr bool counts_for_sympos(bool defined, unsigned type) { return defined && type != STT_SECTION && type != STT_FILE; }

// The old_sympos that selects the definition at 0-based [index] among [count] definitions of a
// name, in symbol-table order: 0 when it is the only one, else index + 1.
constexpr uint64_t sympos_for(size_t index, size_t count) { return count <= 1 ? 0 : static_cast<uint64_t>(index) + 1; }

// The 0-based index among [count] definitions of [name] that [sympos] selects. Errors:
// not_found (no definition, or sympos past the last), invalid_argument (sympos 0 with several
// definitions: says how many and asks for old_sympos). [where] names the file and table.
inline Result<size_t> choose_sympos(std::string_view name, uint64_t sympos, size_t count, std::string_view where) {
  if (count == 0) return make_error(ErrorKind::not_found, "symbol '{}' is not defined in {}", name, where);
  if (sympos == 0) {
    if (count == 1) return size_t{0};
    Error e(ErrorKind::invalid_argument,
            fmt::format("symbol '{}' is defined {} times in {}; set old_sympos to 1..{} to choose one", name, count, where, count));
    e.hint = "old_sympos N selects the Nth definition of the name in symbol-table order (`readelf -sW` lists them)";
    return e;
  }
  if (sympos > count)
    return make_error(ErrorKind::not_found, "old_sympos {} asks for definition #{} of '{}', but {} has only {}", sympos, sympos, name,
                      where, count);
  return static_cast<size_t>(sympos - 1);
}

}  // namespace lg
