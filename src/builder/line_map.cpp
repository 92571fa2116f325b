#include "builder/line_map.h"

#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "builder/compile_commands.h"

namespace lg::builder {

std::vector<LineHunk> parse_hunks(const std::string& unified_diff) {
  std::vector<LineHunk> out;
  std::istringstream in(unified_diff);
  for (std::string line; std::getline(in, line);) {
    if (!line.starts_with("@@ -")) continue;
    LineHunk h;
    unsigned long a = 0, b = 1, c = 0, d = 1;
    const char* p = line.c_str() + 4;
    char* end = nullptr;
    a = std::strtoul(p, &end, 10);
    if (*end == ',') b = std::strtoul(end + 1, &end, 10);
    if (end[0] != ' ' || end[1] != '+') continue;
    c = std::strtoul(end + 2, &end, 10);
    if (*end == ',') d = std::strtoul(end + 1, &end, 10);
    h.old_start = a, h.old_count = b, h.new_start = c, h.new_count = d;
    out.push_back(h);
  }
  return out;
}

namespace {

// safe[i] (1-based line i): a preprocessing directive may start line i — it begins outside a
// block comment and a string, and the line before does not continue onto it with a backslash.
std::vector<char> safe_line_starts(const std::string& t) {
  std::vector<char> safe = {0, 1};
  bool block = false, line_comment = false;
  char str = 0;
  for (size_t i = 0; i < t.size(); ++i) {
    char c = t[i];
    char next = i + 1 < t.size() ? t[i + 1] : 0;
    if (c == '\n') {
      bool cont = (i > 0 && t[i - 1] == '\\') || (i > 1 && t[i - 1] == '\r' && t[i - 2] == '\\');
      if (!cont) str = 0, line_comment = false;
      safe.push_back(!block && !cont && !str && !line_comment);
      continue;
    }
    if (block) {
      if (c == '*' && next == '/') block = false, ++i;
      continue;
    }
    if (line_comment) continue;
    if (str) {
      if (c == '\\' && next != '\n') ++i;
      else if (c == str) str = 0;
      continue;
    }
    if (c == '/' && next == '*') { block = true; ++i; continue; }
    if (c == '/' && next == '/') { line_comment = true; ++i; continue; }
    if (c == '"' || c == '\'') str = c;
  }
  return safe;
}

}  // namespace

std::string keep_original_lines(const std::string& patched, const std::vector<LineHunk>& hunks, size_t* inserted) {
  std::vector<char> safe = safe_line_starts(patched);
  size_t lines = safe.size() - 1;
  if (!patched.empty() && patched.back() == '\n') --lines;  // the entry after the last newline
  std::vector<std::pair<size_t, size_t>> directives;  // before new line n: #line old
  for (size_t k = 0; k < hunks.size(); ++k) {
    const LineHunk& h = hunks[k];
    size_t n_new = h.new_count == 0 ? h.new_start + 1 : h.new_start + h.new_count;
    size_t n_old = h.old_count == 0 ? h.old_start + 1 : h.old_start + h.old_count;
    // The last unchanged line before the next hunk (this hunk's mapping holds up to there).
    size_t bound = lines;
    if (k + 1 < hunks.size()) {
      const LineHunk& g = hunks[k + 1];
      bound = g.new_count == 0 ? g.new_start : g.new_start - 1;
    }
    while (n_new <= bound && n_new < safe.size() && !safe[n_new]) ++n_new, ++n_old;
    if (n_new > bound || n_new > lines) continue;
    directives.emplace_back(n_new, n_old);
  }
  if (inserted) *inserted = directives.size();
  if (directives.empty()) return patched;
  std::string out;
  out.reserve(patched.size() + directives.size() * 16);
  size_t line = 1, next = 0;
  for (size_t i = 0; i <= patched.size(); ++i) {
    bool at_line_start = i == 0 || patched[i - 1] == '\n';
    if (at_line_start && next < directives.size() && directives[next].first == line) {
      out += "#line " + std::to_string(directives[next].second) + "\n";
      ++next;
    }
    if (i == patched.size()) break;
    out += patched[i];
    if (patched[i] == '\n') ++line;
  }
  return out;
}

Result<size_t> keep_original_lines_in_file(const std::string& orig_path, const std::string& patched_path) {
  std::string cmd = "diff -U0 " + shell_quote(orig_path) + " " + shell_quote(patched_path) + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return make_errno_error(ErrorKind::io, "run diff");
  std::string diff;
  char buf[65536];
  while (size_t n = fread(buf, 1, sizeof buf, p)) diff.append(buf, n);
  int status = pclose(p);
  int rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (rc == 0) return size_t{0};
  if (rc != 1) return make_error(ErrorKind::io, "diff {} {} failed: {}", orig_path, patched_path, diff.substr(0, 300));
  std::ifstream in(patched_path, std::ios::binary);
  if (!in) return make_errno_error(ErrorKind::io, "read {}", patched_path);
  std::stringstream ss;
  ss << in.rdbuf();
  size_t inserted = 0;
  std::string text = keep_original_lines(ss.str(), parse_hunks(diff), &inserted);
  if (inserted == 0) return size_t{0};
  in.close();
  std::ofstream out(patched_path, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out) return make_errno_error(ErrorKind::io, "write {}", patched_path);
  return inserted;
}

}  // namespace lg::builder
