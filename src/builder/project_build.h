// `livegraft build`: from a source tree, a fix (unified diff) and the running binary to a patch
// object. See docs/builder.md.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "builder/diff.h"
#include "common/result.h"

namespace lg::builder {

struct ProjectBuildOptions {
  std::string source_dir;
  std::string diff_path;
  std::string target_path;
  std::string output_path;
  std::string patch_name;                 // empty: from the output file name
  std::optional<std::string> work_dir;    // empty: a fresh directory under $TMPDIR
  std::optional<std::string> build_command;  // empty: `make -B` (must rebuild every file: the copy may hold objects)
  bool keep_work_dir = false;
  // Record the compile commands with a record-only pass of the build command first (nothing
  // compiled; falls back to the real build when that pass cannot stand in for it). false: always
  // the real build.
  bool record_only_pass = true;
  std::function<void(const std::string&)> progress;  // one line per step (stderr in the CLI)
};

struct ProjectBuildResult {
  std::vector<std::string> changed_files;   // translation units the fix touched
  std::vector<FunctionChange> functions;    // across all of them
  std::vector<std::string> warnings;
  std::string work_dir;
};

Result<ProjectBuildResult> build_project_patch(const ProjectBuildOptions& options);

}  // namespace lg::builder
