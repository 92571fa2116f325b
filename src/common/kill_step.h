// Kill points in code shared by several operations (the stop-the-world switch runs for apply
// and for revert): the operation names itself with a KillPointOperation scope, and the shared
// code marks its steps with kill_step("after_stop"), which is kill_point("<operation>.after_stop")
// (common/kill_point.h: LIVEGRAFT_KILL_TRACE / LIVEGRAFT_KILL_AT).
#pragma once

#include <string>

#include "common/kill_point.h"

namespace lg {

namespace detail {
inline const char*& current_kill_operation() {
  static thread_local const char* op = nullptr;
  return op;
}
}  // namespace detail

// Names the operation whose steps kill_step marks, for its lifetime (scopes nest).
class KillPointOperation {
 public:
  explicit KillPointOperation(const char* op) : previous_(detail::current_kill_operation()) {
    detail::current_kill_operation() = op;
  }
  ~KillPointOperation() { detail::current_kill_operation() = previous_; }
  KillPointOperation(const KillPointOperation&) = delete;
  KillPointOperation& operator=(const KillPointOperation&) = delete;

 private:
  const char* previous_;
};

// kill_point("<current operation>.<step>"); nothing outside an operation (the stand-alone
// `livegraft inject` names none: its kill points are inject.* in src/process).
inline void kill_step(const char* step) {
  const auto& c = detail::kill_point_config();
  const char* op = detail::current_kill_operation();
  if (!op || (!c.trace && !c.at_number && !c.at_name)) return;
  std::string name = std::string(op) + "." + step;
  kill_point(name.c_str());
}

}  // namespace lg
