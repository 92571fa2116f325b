#include "cli/output.h"

#include <cstdio>
#include <iostream>

#include "common/json_text.h"
#include "common/utf8.h"

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
    case ErrorKind::agent:
    case ErrorKind::version: return kExitAgent;
    case ErrorKind::thread_died:
    case ErrorKind::io:
    case ErrorKind::internal: return kExitFailure;
  }
  return kExitFailure;
}

void print_json(nlohmann::json j) {
  bool replaced = false;
  std::string text = dump_json(j, 2, &replaced);
  if (replaced && j.is_object()) {
    j["note"] = "some text was not valid UTF-8: each invalid byte is shown as U+FFFD";
    text = dump_json(j, 2);
  }
  std::cout << text << std::endl;
}

namespace {
// Text for a terminal: invalid UTF-8 and control characters shown as \xNN.
std::string for_terminal(const std::string& s) { return is_valid_utf8(s) ? s : printable(s); }
}  // namespace

int report_error(const GlobalOptions& global, const Error& error, const nlohmann::json& details) {
  if (global.json) {
    nlohmann::json j = {{"ok", false}, {"error", error.message}, {"kind", to_string(error.kind)}};
    if (!error.hint.empty()) j["hint"] = error.hint;
    if (details.is_object()) j.update(details);
    print_json(std::move(j));
  } else {
    std::cerr << "livegraft: error: " << for_terminal(error.message) << "\n";
    if (!error.hint.empty()) std::cerr << "  hint: " << for_terminal(error.hint) << "\n";
  }
  return exit_code_for(error);
}

void print_json_ok(const nlohmann::json& result) {
  nlohmann::json j = {{"ok", true}};
  if (result.is_object()) j.update(result);
  print_json(std::move(j));
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
