// Printing results and errors: for people on stdout/stderr, or one JSON document on stdout.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "common/result.h"

namespace lg::cli {

// Maps an error kind to the documented exit code.
int exit_code_for(const Error& error);

// Prints [error] ("livegraft: error: ..." + hint on stderr, or {"ok":false,...} on stdout with
// --json; [details] is merged into the JSON) and returns its exit code.
int report_error(const GlobalOptions& global, const Error& error, const nlohmann::json& details = nullptr);

// Prints {"ok":true, ...result} with --json; otherwise calls nothing (the command prints text).
void print_json_ok(const nlohmann::json& result);

// Prints [j] as one JSON document on stdout. Never throws: text that is not valid UTF-8 is
// replaced by U+FFFD and a "note" key says so.
void print_json(nlohmann::json j);

// A progress printer (stderr): every step with -v, else only waits (not with --json).
std::function<void(const std::string&)> progress_printer(const GlobalOptions& global);

}  // namespace lg::cli
