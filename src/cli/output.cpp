#include "cli/output.h"

#include <cstdio>
#include <iostream>

namespace lg::cli {

int exit_code_for(const Error& error) {
  switch (error.kind) {
    case ErrorKind::invalid_argument: return kExitUsage;
    case ErrorKind::not_found: return kExitNotFound;
    case ErrorKind::permission: return kExitPermission;
    case ErrorKind::busy:
    case ErrorKind::unsafe:
    case ErrorKind::timeout: return kExitRefused;
    case ErrorKind::bad_patch:
    case ErrorKind::unsupported:
    case ErrorKind::mismatch: return kExitBadPatch;
    case ErrorKind::agent: return kExitAgent;
    case ErrorKind::thread_died:
    case ErrorKind::io:
    case ErrorKind::internal: return kExitFailure;
  }
  return kExitFailure;
}

int report_error(const GlobalOptions& global, const Error& error, const nlohmann::json& details) {
  if (global.json) {
    nlohmann::json j = {{"ok", false}, {"error", error.message}, {"kind", to_string(error.kind)}};
    if (!error.hint.empty()) j["hint"] = error.hint;
    if (details.is_object()) j.update(details);
    std::cout << j.dump(2) << std::endl;
  } else {
    std::cerr << "livegraft: error: " << error.message << "\n";
    if (!error.hint.empty()) std::cerr << "  hint: " << error.hint << "\n";
  }
  return exit_code_for(error);
}

void print_json_ok(const nlohmann::json& result) {
  nlohmann::json j = {{"ok", true}};
  j.update(result);
  std::cout << j.dump(2) << std::endl;
}

std::function<void(const std::string&)> progress_printer(const GlobalOptions& global) {
  // Every step with -v; without it, only what makes a command slow (waiting for threads), so
  // nobody stares at a silent terminal. --json keeps stderr quiet unless -v.
  bool all = global.verbose > 0, slow_only = !global.json;
  return [all, slow_only](const std::string& line) {
    if (all || (slow_only && line.rfind("waiting", 0) == 0)) std::cerr << "livegraft: " << line << std::endl;
  };
}

}  // namespace lg::cli
