// Presenting a diff to people (text) and programs (JSON).
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "builder/diff.h"

namespace lg::builder {

// One line per function: "CHANGED parse", "CHANGED helper (sympos 2)", "NEW parse_fixed",
// then "NEW DATA x", "LINE-ONLY f" (informational), warnings prefixed "warning: ".
std::string format_text(const DiffResult& r);
nlohmann::json to_json(const DiffResult& r);

}  // namespace lg::builder
