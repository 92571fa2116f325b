#include "builder/report.h"

#include <fmt/format.h>

namespace lg::builder {

std::string format_text(const DiffResult& r) {
  std::string out;
  for (const FunctionChange& f : r.functions) {
    out += fmt::format("{} {}", to_string(f.status), f.name);
    if (f.sympos) out += fmt::format(" (sympos {})", f.sympos);
    out += '\n';
    for (const std::string& why : f.reasons) out += fmt::format("  because it {}\n", why);
  }
  for (const std::string& d : r.new_data) out += fmt::format("NEW DATA {}\n", d);
  for (const auto& [name, sympos] : r.bound) out += fmt::format("BOUND {} (sympos {})\n", name, sympos);
  for (const auto& [name, sympos] : r.originals)
    out += sympos ? fmt::format("ORIGINAL {} (sympos {})\n", name, sympos) : fmt::format("ORIGINAL {}\n", name);
  for (const std::string& k : r.kept_new) out += fmt::format("KEPT {}\n", k);
  for (const std::string& l : r.line_only) out += fmt::format("LINE-ONLY {}\n", l);
  for (const std::string& w : r.warnings) out += fmt::format("warning: {}\n", w);
  return out;
}

nlohmann::json to_json(const DiffResult& r) {
  nlohmann::json j;
  j["functions"] = nlohmann::json::array();
  for (const FunctionChange& f : r.functions)
    j["functions"].push_back({{"name", f.name}, {"status", to_string(f.status)}, {"sympos", f.sympos}, {"local", f.local}, {"reasons", f.reasons}});
  j["new_data"] = r.new_data;
  j["line_only"] = r.line_only;
  j["externals"] = r.externals;
  j["bound"] = nlohmann::json::array();
  for (const auto& [name, sympos] : r.bound) j["bound"].push_back({{"name", name}, {"sympos", sympos}});
  j["originals"] = nlohmann::json::array();
  for (const auto& [name, sympos] : r.originals) j["originals"].push_back({{"name", name}, {"sympos", sympos}});
  j["kept_new"] = r.kept_new;
  j["warnings"] = r.warnings;
  return j;
}

}  // namespace lg::builder
