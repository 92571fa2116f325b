// `livegraft build`: from a source tree, a fix (unified diff) and the running binary to a patch
// object. See docs/builder.md.
#pragma once

#include <functional>
#include <optional>
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
  std::function<void(const std::string&)> progress;  // one line per step (stderr in the CLI)
};

struct ProjectBuildResult {
  std::vector<std::string> changed_files;   // translation units with changed functions
  std::vector<std::string> recompiled;      // units the build recompiled that go into the target
  std::vector<FunctionChange> functions;    // across all of them
  std::vector<std::string> line_only;       // functions that differ only in __LINE__ values
  std::vector<TypeLayoutChange> type_changes;
  size_t line_directives = 0;               // #line directives inserted into the fixed sources
  std::vector<std::string> warnings;
  std::string work_dir;
};

Result<ProjectBuildResult> build_project_patch(const ProjectBuildOptions& options);

}  // namespace lg::builder
