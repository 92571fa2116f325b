// JSON to text and back without exceptions. nlohmann::json::dump throws type_error 316 on a
// string that is not valid UTF-8, which an uncaught exception turned into SIGABRT; every dump in
// the controller and the CLI goes through dump_json. Header-only: only code that already uses
// nlohmann::json includes it.
#pragma once

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "common/utf8.h"

namespace lg {

// j as text. Strings that are not valid UTF-8 are replaced by U+FFFD (*replaced says whether
// that happened). Never throws.
inline std::string dump_json(const nlohmann::json& j, int indent = -1, bool* replaced = nullptr) {
  if (replaced) *replaced = false;
  try {
    return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::strict);
  } catch (const nlohmann::json::exception&) {
  }
  if (replaced) *replaced = true;
  try {
    return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
  } catch (const nlohmann::json::exception&) {
    return "null";
  }
}

// The first string (value or object key) in [j] that is not valid UTF-8, shown with
// lg::printable; nullopt when every string is valid.
inline std::optional<std::string> find_invalid_utf8(const nlohmann::json& j) {
  if (j.is_string()) {
    const auto& s = j.get_ref<const std::string&>();
    if (!is_valid_utf8(s)) return printable(s);
  } else if (j.is_object()) {
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (!is_valid_utf8(it.key())) return printable(it.key());
      if (auto bad = find_invalid_utf8(it.value())) return bad;
    }
  } else if (j.is_array()) {
    for (const auto& e : j)
      if (auto bad = find_invalid_utf8(e)) return bad;
  }
  return std::nullopt;
}

// Parses [text] (ill-formed UTF-8 in it replaced by U+FFFD first); a discarded value on error.
// Never throws.
inline nlohmann::json parse_json(const std::string& text) {
  try {
    if (is_valid_utf8(text)) return nlohmann::json::parse(text, nullptr, false);
    return nlohmann::json::parse(replace_invalid_utf8(text), nullptr, false);
  } catch (...) {
    return nlohmann::json(nlohmann::json::value_t::discarded);
  }
}

}  // namespace lg
