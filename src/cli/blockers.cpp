#include "cli/blockers.h"

#include <iostream>

#include <fmt/format.h>

namespace lg::cli {

nlohmann::json blockers_json(const std::vector<Blocker>& blockers) {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& b : blockers) j.push_back({{"tid", b.tid}, {"reason", b.reason}, {"stack", b.stack}});
  return j;
}

void print_blockers(const std::vector<Blocker>& blockers) {
  for (const auto& b : blockers) {
    std::cerr << fmt::format("  thread {}: {}\n", b.tid, b.reason);
    for (size_t i = 0; i < b.stack.size(); ++i) std::cerr << fmt::format("    #{:<2} {}\n", i, b.stack[i]);
  }
}

}  // namespace lg::cli
