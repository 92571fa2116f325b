// Keeping the original's line numbers in the patched source: a fix that adds or removes lines
// shifts every later `__LINE__` (assert, error-reporting macros) and would make the code of
// dozens of unchanged functions differ. The patched file is compiled with a `#line N` directive
// after each changed region, so every unchanged line keeps the number it had in the original
// (upstream Linux's klp-build does the same with scripts/livepatch/fix-patch-lines).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "common/result.h"

namespace lg::builder {

// One `@@ -old_start,old_count +new_start,new_count @@` of a unified diff (counts may be 0; a
// start is then the line before the change, as diff writes it).
struct LineHunk {
  size_t old_start = 0, old_count = 0, new_start = 0, new_count = 0;
};

std::vector<LineHunk> parse_hunks(const std::string& unified_diff);

// `patched` with `#line N` directives inserted after each hunk, each placed at the start of a
// line outside comments, string literals and continued lines (moved down to the next such line,
// or left out when the next hunk comes first). `*inserted` counts the directives.
std::string keep_original_lines(const std::string& patched, const std::vector<LineHunk>& hunks, size_t* inserted);

// Rewrites `patched_path` in place so its unchanged lines keep their numbers in `orig_path`
// (the hunks from `diff -U0`). Returns the number of directives inserted (0: the files are the
// same or only lines at the end changed). Errors: a file cannot be read or written, diff fails.
Result<size_t> keep_original_lines_in_file(const std::string& orig_path, const std::string& patched_path);

}  // namespace lg::builder
