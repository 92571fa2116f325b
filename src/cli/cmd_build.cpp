// livegraft build --source DIR --diff FIX.diff --target BINARY -o OUT.o
#include <iostream>
#include <memory>

#include "builder/project_build.h"
#include "builder/report.h"
#include "cli/output.h"

namespace lg::cli {

void add_build_command(CLI::App& app, GlobalOptions& global, int& exit_code) {
  auto opts = std::make_shared<builder::ProjectBuildOptions>();
  auto json = std::make_shared<bool>(false);
  auto build_cmd = std::make_shared<std::string>();
  auto work = std::make_shared<std::string>();
  auto db = std::make_shared<std::string>();
  auto no_lines = std::make_shared<bool>(false);
  auto no_bind = std::make_shared<bool>(false);
  auto* cmd = app.add_subcommand("build", "Build a patch object from a source tree and a fix (kpatch-build for user space)");
  cmd->add_option("--source", opts->source_dir, "The source tree the running binary was built from")->required()->check(CLI::ExistingDirectory);
  cmd->add_option("--diff", opts->diff_path, "The fix, a unified diff applied with patch -p1")->required()->check(CLI::ExistingFile);
  cmd->add_option("--target", opts->target_path, "The running program's binary (/proc/PID/exe works)")->required()->check(CLI::ExistingFile);
  cmd->add_option("-o,--output", opts->output_path, "Patch object to write")->required();
  cmd->add_option("--symbols", opts->symbols_file,
                  "The separate debug file of a stripped target (default: looked up by build-id under "
                  "$LIVEGRAFT_DEBUG_ROOT or /usr/lib/debug, .gnu_debuglink, debuginfod when DEBUGINFOD_URLS is set)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--name", opts->patch_name, "Patch name (default: the output file's name)");
  cmd->add_option("--build-command", *build_cmd,
                  "The project's incremental build command (default: make), run on a fixed copy of the built tree; "
                  "what it recompiles (its compilers are wrapped first in PATH) is what the patch is built from");
  cmd->add_option("--compile-commands", *db, "A compile_commands.json to use (default: DIR/ or DIR/build/compile_commands.json)")
      ->check(CLI::ExistingFile);
  cmd->add_flag("--no-keep-line-numbers", *no_lines,
                "Compile the fixed sources as they are (default: #line directives keep the original's line numbers "
                "outside the changed lines)");
  cmd->add_option("--work-dir", *work, "Work directory (default: a new one under $TMPDIR)");
  cmd->add_flag("--no-bind-mount", *no_bind,
                "Run the build in the copy as it is (default: in a private mount namespace with the copy mounted over "
                "DIR's path, when unshare allows, so absolute paths in build files mean the copy)");
  cmd->add_flag("--keep-work-dir", opts->keep_work_dir, "Keep the work directory on success too");
  auto no_cache = std::make_shared<bool>(false);
  cmd->add_flag("--no-cache", *no_cache,
                "Compile every original (default: take it from the cache of original objects in "
                "$XDG_CACHE_HOME/livegraft or ~/.cache/livegraft when an earlier build compiled it the same way)");
  cmd->add_flag("--immediate-ok", opts->immediate_ok,
                "Flag the patch as safe without any consistency model (LIVEGRAFT_PATCH_IMMEDIATE): it may then be "
                "applied with --model immediate. Only when old and new code may run in one call chain");
  cmd->add_flag("--json", *json, "Print one JSON document on stdout");
  cmd->callback([opts, json, build_cmd, work, db, no_lines, no_bind, no_cache, &global, &exit_code] {
    opts->object_cache = !*no_cache;
    opts->bind_copy_over_source = !*no_bind;
    if (*json) global.json = true;
    if (!db->empty()) opts->compile_commands = *db;
    opts->keep_line_numbers = !*no_lines;
    if (!build_cmd->empty()) opts->build_command = *build_cmd;
    if (!work->empty()) opts->work_dir = *work;
    opts->progress = [](const std::string& line) { std::cerr << "livegraft build: " << line << "\n"; };
    auto r = builder::build_project_patch(*opts);
    if (!r) {
      exit_code = report_error(global, r.error());
      return;
    }
    nlohmann::json j;
    j["output"] = opts->output_path;
    j["changed_files"] = r->changed_files;
    j["recompiled"] = r->recompiled;
    j["line_only"] = r->line_only;
    j["line_directives"] = r->line_directives;
    j["type_changes"] = nlohmann::json::array();
    for (const auto& t : r->type_changes)
      j["type_changes"].push_back({{"type", t.type}, {"old_size", t.old_size}, {"new_size", t.new_size}, {"members", t.members},
                                   {"patched_users", t.patched_users}, {"other_users", t.other_users}});
    j["functions"] = nlohmann::json::array();
    for (const auto& f : r->functions)
      j["functions"].push_back(
          {{"name", f.name}, {"status", builder::to_string(f.status)}, {"sympos", f.sympos}, {"reasons", f.reasons}});
    j["originals"] = nlohmann::json::array();
    for (const auto& [name, sympos] : r->originals) j["originals"].push_back({{"name", name}, {"sympos", sympos}});
    j["kept_new"] = r->kept_new;
    j["warnings"] = r->warnings;
    j["timings"] = nlohmann::json::array();
    for (const auto& t : r->timings) {
      j["timings"].push_back({{"step", t.step}, {"seconds", t.seconds}});
      if (!t.note.empty()) j["timings"].back()["note"] = t.note;
    }
    j["total_seconds"] = r->total_seconds;
    if (global.json) return print_json_ok(j);
    for (const auto& f : r->functions) {
      std::cout << builder::to_string(f.status) << " " << f.name << (f.sympos ? fmt::format(" (sympos {})", f.sympos) : "") << "\n";
      for (const auto& why : f.reasons) std::cout << "  because it " << why << "\n";
    }
    for (const auto& f : r->line_only) std::cout << "LINE-ONLY " << f << "\n";
    for (const auto& [name, sympos] : r->originals)
      std::cout << "ORIGINAL " << name << (sympos ? fmt::format(" (sympos {})", sympos) : "")
                << "\n  the new code keeps its address: bound to the original " << name
                << ", whose entry leads to the newest version (valid after a revert)\n";
    for (const auto& name : r->kept_new)
      std::cout << "KEPT " << name << "\n  the new code keeps the address of this new function: the patch's code stays "
                   "mapped after a revert (LIVEGRAFT_PATCH_KEEP_CODE), so a pointer the program holds still runs\n";
    for (const auto& w : r->warnings) std::cout << "warning: " << w << "\n";
    std::cout << "wrote " << opts->output_path << "\n";
  });
}

}  // namespace lg::cli
