// UTF-8 checks for text that crosses into JSON (the agent protocol, --json output): names and
// paths come from the command line and from patch objects, and may hold any byte.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace lg {

// Whether [s] is well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, <= U+10FFFF).
bool is_valid_utf8(std::string_view s);

// [s] for people: well-formed UTF-8 as is, every byte of an ill-formed sequence as "\xNN", and
// ASCII control characters as "\xNN" too (so a name cannot move the cursor or end a line).
std::string printable(std::string_view s);

// [s] with every ill-formed sequence replaced by U+FFFD (what JSON text can carry).
std::string replace_invalid_utf8(std::string_view s);

// Validates a name the user gave (a patch name): well-formed UTF-8, not empty, no control
// characters. Returns what is wrong with it, nullopt when it is fine.
std::optional<std::string> check_name(std::string_view name);

}  // namespace lg
