#include "builder/names.h"

#include <cctype>
#include <vector>

namespace lg::builder {

namespace {

bool all_digits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  return true;
}

std::vector<std::string_view> split_dots(std::string_view name) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  // A leading '.' (".LC0") belongs to the first component.
  size_t from = name.starts_with('.') ? 1 : 0;
  for (size_t i = name.find('.', from); i != std::string_view::npos; i = name.find('.', i + 1)) {
    parts.push_back(name.substr(start, i - start));
    start = i + 1;
  }
  parts.push_back(name.substr(start));
  return parts;
}

}  // namespace

std::string canonical_name(std::string_view name) {
  auto parts = split_dots(name);
  std::string out(parts[0]);
  for (size_t i = 1; i < parts.size(); ++i) {
    if (all_digits(parts[i])) continue;
    out += '.';
    out += parts[i];
  }
  return out;
}

bool is_cold_child(std::string_view name) {
  auto parts = split_dots(name);
  for (size_t i = 1; i < parts.size(); ++i)
    if (parts[i] == "cold") return true;
  return false;
}

std::string cold_parent_name(std::string_view name) {
  size_t pos = name.find(".cold");
  while (pos != std::string_view::npos) {
    size_t end = pos + 5;
    if (end == name.size() || name[end] == '.') return std::string(name.substr(0, pos));
    pos = name.find(".cold", pos + 1);
  }
  return {};
}

bool has_numeric_suffix(std::string_view name) {
  size_t dot = name.rfind('.');
  return dot != std::string_view::npos && dot > 0 && all_digits(name.substr(dot + 1));
}

bool is_anonymous_constant_name(std::string_view name) {
  std::string c = canonical_name(name);
  return c == "__func__" || c == "__FUNCTION__" || c == "__PRETTY_FUNCTION__" || c == "CSWTCH" ||
         name.starts_with(".L") || name.starts_with("CSWTCH.");
}

}  // namespace lg::builder
