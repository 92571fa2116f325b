// Pass 4: choose what goes into the patch. Starts from the CHANGED and NEW functions and new
// global data, and follows relocations: NEW functions and data, `.cold` children of included
// functions and anonymous read-only data (string literals, constants, switch tables) are
// copied; references to SAME functions and to existing data become references to the
// original's symbol by name (the agent's loader resolves them in the target), so static
// variables keep their live state. Relocation types the loader cannot apply are refused.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "builder/diagnostics.h"
#include "builder/eh_frame.h"
#include "builder/object.h"

namespace lg::builder {

struct ExternalRef {
  std::string name;         // the original's name
  uint8_t type = 0;         // STT_* of the original symbol (STT_NOTYPE when undefined there)
  bool local_in_original = false;  // a static function/variable of the original object
  std::string first_user;   // an included function that references it, for messages
};

struct Inclusion {
  std::vector<size_t> sections;                 // patched-object sections to copy, ascending
  std::vector<const Symbol*> replaced;          // CHANGED functions: the patch's funcs entries
  std::vector<const Symbol*> added_functions;   // NEW functions
  std::vector<const Symbol*> added_data;        // NEW data objects that are included
  std::map<std::string, ExternalRef> externals; // references resolved in the target, by name
  EhFrameSubset eh_frame;                       // unwind info of the copied text sections
};

Inclusion include(Object& orig, Object& patched, Diagnostics& diag);

// The relocation types the agent's loader applies (docs/patch-format.md).
bool loader_supports(uint32_t type);
std::string relocation_type_name(uint32_t type);

}  // namespace lg::builder
