// Symbol-name rules of GCC's output that the passes rely on.
#pragma once

#include <string>
#include <string_view>

namespace lg::builder {

// The name with every numeric component removed: "foo.isra.0" -> "foo.isra",
// "foo.constprop.3.isra.1" -> "foo.constprop.isra", "count.2" -> "count", "foo.cold.1" ->
// "foo.cold", "bar.lto_priv.0" -> "bar.lto_priv". GCC numbers clones and static locals with a
// per-translation-unit counter, so these numbers differ between two builds of one file.
std::string canonical_name(std::string_view name);

// "foo.cold" / "foo.cold.3": a hot/cold split child that is only ever jumped to from its parent
// (never called), so it is copied with its parent and never redirected itself.
bool is_cold_child(std::string_view name);
// "foo" for "foo.cold.3"; "" when not a cold child.
std::string cold_parent_name(std::string_view name);

// GCC's name for a function-scope static: "<name>.<N>".
bool has_numeric_suffix(std::string_view name);

// Compiler-made read-only objects with no identity of their own (__func__, switch tables,
// string labels): compared by content, and copied into the patch when needed.
bool is_anonymous_constant_name(std::string_view name);

}  // namespace lg::builder
