// Types whose layout a fix changes, read from the DWARF of the original and the fixed object of
// one translation unit. The patch cannot convert live data: objects of the old layout that exist
// while the new code runs (and new-layout objects that old code still running receives) are
// misread. The builder reports each such type so the author can decide (objects that live only
// during one call are safe after the switch; otherwise shadow variables or a conversion hook).
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "common/result.h"

namespace lg::builder {

struct TypeLayoutChange {
  std::string type;                   // "struct AggInfo" (a typedef name for an anonymous struct)
  uint64_t old_size = 0, new_size = 0;
  std::vector<std::string> members;   // "nColumn: i16 at 4 (2 bytes) -> int at 4 (4 bytes)", "+ x at 8 (4 bytes)"
  std::vector<std::string> patched_users;  // functions in the patch that use it (parameters, locals)
  std::vector<std::string> other_users;    // functions of this unit, not in the patch, that use it
};

// Errors: an object without DWARF (built without -g), or unreadable.
Result<std::vector<TypeLayoutChange>> compare_type_layouts(const std::string& orig_object, const std::string& patched_object,
                                                           const std::set<std::string>& patched_functions);

// One warning, for people.
std::string describe(const TypeLayoutChange& c);

}  // namespace lg::builder
