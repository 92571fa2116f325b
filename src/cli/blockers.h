// Printing the threads that blocked a transition, with their stacks.
#pragma once

#include <vector>

#include <nlohmann/json.hpp>

#include "controller/transition.h"

namespace lg::cli {

nlohmann::json blockers_json(const std::vector<Blocker>& blockers);
void print_blockers(const std::vector<Blocker>& blockers);

}  // namespace lg::cli
