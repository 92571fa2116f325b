// `livegraft build`: from a source tree, a fix (unified diff) and the running binary to a patch
// object. See docs/builder.md.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "builder/diff.h"
#include "builder/type_layout.h"
#include "common/result.h"

namespace lg::builder {

struct ProjectBuildOptions {
  std::string source_dir;
  std::string diff_path;
  std::string target_path;
  std::string output_path;
  // The separate debug file of a stripped target (`--symbols FILE`); otherwise it is looked up
  // like `livegraft apply` does (build-id under the debug roots, .gnu_debuglink, debuginfod).
  std::string symbols_file;
  std::string patch_name;                 // empty: from the output file name
  std::optional<std::string> work_dir;    // empty: a fresh directory under $TMPDIR
  // The project's incremental build, run in the fixed copy of the built tree; what it recompiles
  // is what the patch is built from. Empty: `make`.
  std::optional<std::string> build_command;
  std::optional<std::string> compile_commands;  // a compile_commands.json (default: DIR/ or DIR/build/)
  bool keep_work_dir = false;
  bool immediate_ok = false;  // --immediate-ok: flag the patch LIVEGRAFT_PATCH_IMMEDIATE
  // Run the build in record-only mode first (compiles and links only create their outputs;
  // falls back to the real build when that cannot stand in for it). false: the real build.
  bool record_only_pass = true;
  // Run the build and the fixed compiles with the copy bind-mounted over source_dir in a
  // private mount namespace (when unshare allows), so absolute paths in build files mean the copy.
  bool bind_copy_over_source = true;
  // Compile the fixed units with #line directives that keep the original's line numbers.
  bool keep_line_numbers = true;
  // Take the original of a unit from the cache of original objects when an earlier build
  // compiled it with the same compiler, flags and preprocessed input (object_cache.h); store it
  // there otherwise. false: `--no-cache`. object_cache_dir empty: default_object_cache_dir().
  bool object_cache = true;
  std::optional<std::string> object_cache_dir;
  // One line per step (stderr in the CLI), each starting with the seconds since the start
  // ("  12.3 s  compiling ..."); a step that takes long says so every `heartbeat_seconds`.
  std::function<void(const std::string&)> progress;
  double heartbeat_seconds = 20;
};

// Where the time of a build went: one entry per step, in order ("copy", "build", "compile
// sqlite3.c", "diff sqlite3.c", "diff sqlite3.c: load", ..., "type layouts", "emit").
struct BuildTiming {
  std::string step;
  double seconds = 0;
  std::string note;  // where a compile step's original came from ("original from the cache", ...)
};

struct ProjectBuildResult {
  std::vector<std::string> changed_files;   // translation units with changed functions
  std::vector<std::string> recompiled;      // units the build recompiled that go into the target
  std::vector<FunctionChange> functions;    // across all of them
  std::vector<std::string> line_only;       // functions that differ only in __LINE__ values
  std::map<std::string, uint64_t> originals; // replaced functions whose kept address is the original's
  std::set<std::string> kept_new;            // new functions whose address is kept (LIVEGRAFT_PATCH_KEEP_CODE)
  std::vector<TypeLayoutChange> type_changes;
  size_t line_directives = 0;               // #line directives inserted into the fixed sources
  std::vector<std::string> warnings;
  std::string work_dir;
  std::vector<BuildTiming> timings;
  double total_seconds = 0;
};

// "copy 3.1 s, build 8.0 s, compile x.c 80.2 s [original from the cache], ...; total 97.2 s"
// (the sub-steps of a diff in parentheses, a step's note in brackets).
std::string describe_timings(const ProjectBuildResult& r);

Result<ProjectBuildResult> build_project_patch(const ProjectBuildOptions& options);

}  // namespace lg::builder
