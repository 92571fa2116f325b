// Pass 3: mark every function of the patched object NEW, CHANGED or SAME, by its bytes and its
// relocations (type, offset, target under the original's names, addend); a function whose
// inlined callee changed differs in its own code and so is CHANGED without special handling.
// A `.cold` child that changed makes its parent CHANGED. Correlated data must be identical:
// a changed size (layout) or initial value of existing data is refused, naming it.
#pragma once

#include "builder/diagnostics.h"
#include "builder/object.h"

namespace lg::builder {

void compare(Object& orig, Object& patched, Diagnostics& diag);

// True when `f` (original) and `g` (patched) have the same bytes and relocations, targets under
// the names correlated so far; a relocation into each one's own `.cold` part compares that
// part's code. (Used by correlate to pair functions whose names do not tell.)
bool identical_code(const Object& orig, const Symbol& f, const Object& patched, const Symbol& g);

}  // namespace lg::builder
