// Pass 2: correlate the original's and the patched object's functions and data (sets twins).
//  - functions and data by exact name, then by canonical name (names.h) when that is unique on
//    both sides, so "foo.isra.0" pairs with "foo.isra.1";
//  - `.cold` children attached to their parent functions;
//  - function-scope statics ("count.3") only through the correlated functions that reference
//    them: the Nth static of a base name in F pairs with the one of that base name in F's twin.
//    An original static whose every referencing function lost the reference is refused, since
//    then nothing ties the new code to the live storage (kpatch does the same);
//  - functions named after a lambda ({lambda(int)#2}: its operator(), std::function's thunks)
//    whose group of names differs between the objects (a lambda added or removed renumbers
//    the later ones): paired by identical code, not by name; the original's left over are
//    named in a warning (not replaced: existing closures keep them).
#pragma once

#include "builder/diagnostics.h"
#include "builder/object.h"

namespace lg::builder {

void correlate(Object& orig, Object& patched, Diagnostics& diag);

// A local object with a numeric suffix in writable or TLS storage: a function-scope static.
bool is_static_local(const Object& obj, const Symbol& sym);

}  // namespace lg::builder
