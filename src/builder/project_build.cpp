#include "builder/project_build.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "builder/compile_commands.h"
#include "builder/emit.h"
#include "builder/line_map.h"
#include "builder/object_cache.h"
#include "builder/target.h"
#include "builder/thread_start.h"
#include "builder/type_layout.h"
#include "builder/verify.h"

namespace fs = std::filesystem;

namespace lg::builder {

namespace {

// Runs a shell command; its output (stdout+stderr) goes to *output and is appended to `log`.
int run_captured(const std::string& cmd, const fs::path& log, std::string* output = nullptr) {
  FILE* p = popen(("( " + cmd + " ) 2>&1").c_str(), "r");
  if (!p) return -1;
  std::string out;
  char buf[8192];
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  int status = pclose(p);
  std::ofstream(log, std::ios::app) << "$ " << cmd << "\n" << out;
  if (output) *output = std::move(out);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// What one side of a unit's compile did: its exit code and output, and for the original where
// its object came from (BuildTiming::note) and what to tell about the cache.
struct Side {
  int rc = 0;
  std::string out;
  std::string log;      // for build.log: the commands and their output, the cache key
  std::string note;
  std::string message;  // a progress line (a damaged cache entry, ...)
  bool from_cache = false;
  std::string entry;    // the cache entry it came from
};

Side run_side(const std::string& cmd) {
  Side s;
  FILE* p = popen(("( " + cmd + " ) 2>&1").c_str(), "r");
  if (!p) return Side{-1, {}, "$ " + cmd + "\n(could not run)\n", {}, {}, false, {}};
  char buf[8192];
  while (size_t n = fread(buf, 1, sizeof buf, p)) s.out.append(buf, n);
  int status = pclose(p);
  s.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  s.log = "$ " + cmd + "\n" + s.out;
  return s;
}

// Runs the original's side (a cache lookup or a compile) and the fixed compile (a shell command)
// at the same time: the wall time of the slower; both logged to `log` when both are done.
std::pair<Side, Side> run_pair(const std::function<Side()>& original, const std::string& fixed, const fs::path& log,
                               const std::function<void(double)>& still_running, double every) {
  auto started = std::chrono::steady_clock::now();
  auto a = std::async(std::launch::async, original);
  auto b = std::async(std::launch::async, [&fixed] { return run_side(fixed); });
  for (auto* f : {&a, &b})
    while (f->wait_for(std::chrono::duration<double>(every)) != std::future_status::ready)
      if (still_running) still_running(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  std::pair<Side, Side> r{a.get(), b.get()};
  std::ofstream(log, std::ios::app) << r.first.log << r.second.log;
  return r;
}

// The part of a tool's output a person needs: the lines that say error (or, without any, the
// last lines), at most `max` of them, indented for an error message.
std::string trimmed(const std::string& output, size_t max = 12) {
  std::vector<std::string> lines, errors;
  std::istringstream in(output);
  for (std::string l; std::getline(in, l);) {
    if (l.empty()) continue;
    lines.push_back(l);
    if (l.find("error") != std::string::npos || l.find("FAILED") != std::string::npos ||
        l.find("failed") != std::string::npos || l.find("No such file") != std::string::npos ||
        l.find("malformed") != std::string::npos || l.find("can't find") != std::string::npos)
      errors.push_back(l);
  }
  const std::vector<std::string>& pick = errors.empty() ? lines : errors;
  size_t from = errors.empty() && pick.size() > max ? pick.size() - max : 0;
  std::string out;
  for (size_t i = from; i < pick.size() && i < from + max; ++i) out += "\n    " + pick[i].substr(0, 300);
  if (pick.size() - from > max) out += fmt::format("\n    ... ({} more)", pick.size() - from - max);
  return out;
}

// The files a unified diff changes, relative to the tree root (patch -p1 names).
std::vector<std::string> files_in_diff(const std::string& diff_path) {
  std::ifstream in(diff_path);
  std::set<std::string> files;
  for (std::string line; std::getline(in, line);) {
    if (!line.starts_with("+++ ")) continue;
    std::string name = line.substr(4);
    if (auto tab = name.find('\t'); tab != std::string::npos) name.resize(tab);
    if (name == "/dev/null") continue;
    if (auto slash = name.find('/'); slash != std::string::npos) name = name.substr(slash + 1);
    files.insert(name);
  }
  return {files.begin(), files.end()};
}

bool is_pic(const CompileCommand& c) {
  for (const std::string& a : c.argv)
    if (a == "-fPIC" || a == "-fpic" || a == "-DPIC") return true;
  return false;
}

std::string canonical_or_same(const std::string& p) {
  std::error_code ec;
  fs::path c = fs::weakly_canonical(p, ec);
  return ec ? p : c.string();
}

// The object the project's own build wrote for a compile that already has the builder's section
// flags, when it exists and is not older than its source; nullopt otherwise.
std::optional<fs::path> own_object(const CompileCommand& c) {
  auto has = [&](const char* flag) { return std::find(c.argv.begin(), c.argv.end(), flag) != c.argv.end(); };
  if (c.one_step || c.output.empty() || !has("-ffunction-sections") || !has("-fdata-sections")) return std::nullopt;
  std::error_code e1, e2;
  fs::path o = fs::path(c.output).is_absolute() ? fs::path(c.output) : fs::path(c.directory) / c.output;
  auto ot = fs::last_write_time(o, e1), st = fs::last_write_time(c.file, e2);
  if (e1 || e2 || ot < st || !fs::is_regular_file(o) || fs::file_size(o, e1) == 0) return std::nullopt;
  return o;
}

// The builder's compiles leave out variable tracking (-fno-var-tracking
// -fno-var-tracking-assignments): what the builder reads of the objects' DWARF (type layouts:
// types, members, the DW_AT_type of parameters and variables, scopes; explain: inlined-subroutine
// ranges) never includes a variable's location, which is all that tracking computes (the pass
// is 7 % of sqlite3.c's compile; with the debug binds it keeps through every optimisation, 20 to
// 24 % of httplib.cc's CPU, docs/performance.md). The patch object carries no DWARF. GCC
// makes the same code with and without it (what -fcompare-debug checks); should the verification
// against the target disagree, or the compiler refuse the option, the unit is compiled again with
// the project's flags as they are. Not for clang (it has no such pass).
bool can_drop_var_tracking(const CompileCommand& c) {
  return !c.argv.empty() && fs::path(c.argv[0]).filename().string().find("clang") == std::string::npos;
}

CompileCommand without_var_tracking(const CompileCommand& c) {
  CompileCommand out = c;
  out.argv.push_back("-fno-var-tracking");
  out.argv.push_back("-fno-var-tracking-assignments");
  return out;
}

// Where a unit's original object comes from.
enum class Original { own, cache, compile };

// One translation unit and the commands that compiled it (libtool compiles a file twice:
// -fPIC -DPIC -o .libs/x.o for the shared library, and again for the static one), best first.
struct Unit {
  std::string file;  // absolute, in the source tree
  std::vector<CompileCommand> candidates;
};

}  // namespace

std::string describe_timings(const ProjectBuildResult& r) {
  std::string out;
  bool open = false;
  for (const BuildTiming& t : r.timings) {
    auto colon = t.step.find(": ");
    if (colon != std::string::npos) {  // a sub-step of the previous entry
      out += fmt::format("{}{} {:.1f} s", open ? ", " : " (", t.step.substr(colon + 2), t.seconds);
      open = true;
      continue;
    }
    if (open) out += ")";
    open = false;
    out += fmt::format("{}{} {:.1f} s", out.empty() ? "" : ", ", t.step, t.seconds);
    if (!t.note.empty()) out += " [" + t.note + "]";
  }
  if (open) out += ")";
  return fmt::format("{}; total {:.1f} s", out, r.total_seconds);
}

Result<ProjectBuildResult> build_project_patch(const ProjectBuildOptions& options) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now();
  auto since = [](Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); };
  auto progress = [&](const std::string& s) {
    if (options.progress) options.progress(fmt::format("{:6.1f} s  {}", since(start), s));
  };
  ProjectBuildResult result;
  // The steps' wall times (result.timings): `step(name)` closes the one running and opens `name`.
  Clock::time_point step_start = start;
  std::string step_name;
  std::string step_note;               // of the step running (where a compile's original came from)
  std::vector<BuildTiming> sub_steps;  // of the step running (the passes of a diff)
  auto step = [&](std::string name) {
    if (!step_name.empty()) result.timings.push_back({step_name, since(step_start), std::move(step_note)});
    step_note.clear();
    for (BuildTiming& t : sub_steps) result.timings.push_back(std::move(t));
    sub_steps.clear();
    step_name = std::move(name);
    step_start = Clock::now();
  };
  fs::path work;
  if (options.work_dir) {
    work = fs::absolute(*options.work_dir);
    fs::create_directories(work);
  } else {
    std::string tmpl = (fs::temp_directory_path() / "livegraft-build-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) return make_errno_error(ErrorKind::io, "create a work directory in {}", fs::temp_directory_path().string());
    work = tmpl;
  }
  result.work_dir = work.string();
  bool success = false;
  struct Cleanup {
    const fs::path& work; const bool& success; bool keep;
    ~Cleanup() { if (success && !keep) { std::error_code ec; fs::remove_all(work, ec); } }
  } cleanup{work, success, options.keep_work_dir || options.work_dir.has_value()};
  // Starts over with the real build (this work directory is dropped unless the caller chose it).
  auto again_with_real_build = [&](const std::string& why) {
    progress(why + ": starting again with the real build");
    ProjectBuildOptions again = options;
    again.record_only_pass = false;
    success = true;  // this attempt's directory is not the one to keep
    const double wasted = since(start);
    auto r = build_project_patch(again);
    if (r) {
      r->timings.insert(r->timings.begin(), BuildTiming{"record-only attempt", wasted});
      r->total_seconds += wasted;
    }
    return r;
  };
  auto fail = [&](Error e) {
    e.hint = fmt::format("the work directory is kept: {} (build.log has every command and its output)", work.string());
    return e;
  };
  const fs::path log = work / "build.log";
  const fs::path src = work / "src";
  const fs::path source_dir = fs::canonical(options.source_dir);
  const std::string diff_path = fs::absolute(options.diff_path).string();

  step("read target");
  progress(fmt::format("reading the target {}", options.target_path));
  DebugFileOptions debug;
  debug.roots = default_debug_roots("");
  debug.explicit_file = options.symbols_file;
  auto target = load_target(options.target_path, &debug);
  if (!target) return fail(std::move(target).error());
  if (!target->debug_file.empty())
    progress(fmt::format("the target is stripped: its symbols from {} ({})", target->debug_file, target->debug_origin));
  else if (!target->has_symtab)
    progress(fmt::format("the target is stripped and no debug file was found{}: only its dynamic symbols are known",
                         target->debug_tried.empty() ? "" : fmt::format(" (looked for {})", fmt::join(target->debug_tried, ", "))));
  if (!target->has_code)
    result.warnings.push_back(fmt::format(
        "{} is a separate debug file: the rebuilt original was not compared with the running code (pass the binary or "
        "/proc/PID/exe as --target and the debug file with --symbols to have it checked)",
        options.target_path));

  std::vector<std::string> touched = files_in_diff(diff_path);
  if (touched.empty()) return fail(make_error(ErrorKind::invalid_argument, "{} changes no file", options.diff_path));

  // 1. A copy of the tree with its timestamps (so the project's incremental build sees the
  //    objects up to date and rebuilds only what the fix changes), the fix applied to it.
  step("copy");
  progress(fmt::format("copying {} to {}", source_dir.string(), src.string()));
  std::error_code ec;
  fs::remove_all(src, ec);
  std::string out;
  if (run_captured(fmt::format("cp -a {} {}", shell_quote(source_dir.string()), shell_quote(src.string())), log, &out) != 0)
    return fail(make_error(ErrorKind::io, "copying {} failed:{}", source_dir.string(), trimmed(out)));
  step("patch");
  progress(fmt::format("applying {}", options.diff_path));
  if (run_captured(fmt::format("cd {} && patch -p1 --batch --forward < {}", shell_quote(src.string()), shell_quote(diff_path)),
                   log, &out) != 0)
    return fail(make_error(ErrorKind::invalid_argument, "{} does not apply to {} with patch -p1:{}", options.diff_path,
                           source_dir.string(), trimmed(out)));

  // Build files often name the tree by absolute path (autoconf's abs_srcdir, SQLite's TOP, a
  // CMake build directory): in the copy they would still read the original. Where the kernel
  // allows (root, or an unprivileged user namespace), the build and the fixed compiles run in a
  // private mount namespace with the copy bound over DIR's path, so every path means the copy.
  std::string ns_prefix;
  // (Not when the work directory is inside DIR: the mount would hide it.)
  const bool work_outside_source = fs::path(work).lexically_relative(source_dir).string().starts_with("..");
  if (options.bind_copy_over_source && work_outside_source) {
    for (const char* u : {"unshare --mount --propagation private", "unshare --user --map-root-user --mount --propagation private"}) {
      std::string probe = fmt::format("{} sh -c {} >/dev/null 2>&1", u,
                                      shell_quote(fmt::format("mount --bind {} {}", shell_quote(src.string()), shell_quote(source_dir.string()))));
      if (std::system(probe.c_str()) == 0) {
        ns_prefix = u;
        break;
      }
    }
  }
  auto in_copy = [&](const std::string& cmd) {
    return fmt::format("{} sh -c {}", ns_prefix,
                       shell_quote(fmt::format("mount --bind {} {} && {}", shell_quote(src.string()), shell_quote(source_dir.string()), cmd)));
  };
  if (!ns_prefix.empty()) progress(fmt::format("the copy is mounted over {} for the build (a private mount namespace)", source_dir.string()));

  // 2. The translation units to diff, as compile commands that run in the source tree.
  std::vector<CompileCommand> compiles;
  std::vector<LinkCommand> links;
  fs::path db;
  // (Not with an explicit --build-command: then the project's own build decides what is rebuilt,
  // as it must when the fix changes the input of a generated unit, which the database only names.)
  for (const char* c : {"compile_commands.json", "build/compile_commands.json"})
    if (!options.build_command && fs::exists(source_dir / c)) db = source_dir / c;
  if (options.compile_commands) db = fs::absolute(*options.compile_commands);
  const bool record_only = db.empty() && options.record_only_pass;
  if (!db.empty()) {
    // compile_commands.json (CMake, Meson): the units whose file the fix changes; a changed
    // header may affect any unit, so then all of them (their objects tell what changed) but
    // those whose dependency file says they do not read it (a fix's meson.build or test data).
    progress(fmt::format("using {}", db.string()));
    auto cc = read_compile_commands(db);
    if (!cc) return fail(std::move(cc).error());
    bool header_changed = std::any_of(touched.begin(), touched.end(), [](auto& f) { return !is_source_file(f); });
    for (CompileCommand& c : *cc) {
      bool match = header_changed;
      if (auto deps = header_changed ? unit_dependencies(c) : std::nullopt) {
        match = std::any_of(touched.begin(), touched.end(), [&](const std::string& f) {
          return std::find(deps->begin(), deps->end(), (source_dir / f).lexically_normal().string()) != deps->end();
        });
      } else if (header_changed && !c.output.empty() && !fs::exists(c.output)) {
        match = false;  // never built (a test program the build of the target skipped): in no target
      }
      for (const std::string& f : touched)
        if (c.file == (source_dir / f).lexically_normal().string()) match = true;
      if (match) compiles.push_back(std::move(c));
    }
    if (compiles.empty())
      return fail(make_error(ErrorKind::not_found, "none of the files the fix changes ({}) is compiled according to {}",
                             fmt::join(touched, ", "), db.string()));
  } else {
    // The project's own incremental build after the fix, the compilers wrapped: what it
    // recompiles is what the fix changes, generated sources included (parse.y -> parse.c, an
    // amalgamation, a template). In record-only mode the compiles and links only create their
    // outputs empty; generators and other commands run.
    const std::string build = options.build_command.value_or("make");
    Wrappers wrappers = install_wrappers(work / "bin", work / "records");
    fs::create_directories(work / "records");
    step(record_only ? "build (record-only)" : "build");
    progress(fmt::format("running `{}` on the fixed copy ({}compilers wrapped to record what it rebuilds)", build,
                         record_only ? "record-only: nothing compiled, " : ""));
    // Exported, not prefixed to the command: a build command of several commands (`make -C lib
    // && make -C src`, `cd build; make`) runs every one of them with the wrappers, not the first.
    std::string cmd = fmt::format("cd {} && export {}{} && {{ {}\n}}", shell_quote((ns_prefix.empty() ? src : source_dir).string()),
                                  record_only ? "LIVEGRAFT_RECORD_ONLY=1 " : "", wrappers.env, build);
    if (!ns_prefix.empty()) cmd = in_copy(cmd);
    if (run_captured(cmd, log, &out) != 0) {
      if (record_only) return again_with_real_build(fmt::format("`{}` failed in record-only mode", build));
      return fail(make_error(ErrorKind::io, "the project's build (`{}`) failed after the fix was applied:{}", build, trimmed(out)));
    }
    RecordedBuild rec = read_records(work / "records");
    for (CompileCommand& c : rec.compiles) {
      rebase(c, src.string(), source_dir.string());
      compiles.push_back(std::move(c));
    }
    for (LinkCommand& l : rec.links) {
      auto back = [&](std::string& s) {
        if (s.starts_with(src.string())) s = source_dir.string() + s.substr(src.string().size());
      };
      back(l.directory);
      back(l.output);
      for (std::string& i : l.inputs) back(i);
      links.push_back(std::move(l));
    }
    if (compiles.empty())
      return fail(make_error(ErrorKind::not_found,
                             "`{}` recompiled nothing after the fix was applied (is {} the built tree the target came "
                             "from? does the build call the compiler through $CC/$CXX or by a name in $PATH?)",
                             build, source_dir.string()));
  }

  // Which recompiled units go into the target: the inputs of the link that wrote it (by path,
  // or by name/soname), else the units whose source file the target's symbol table names.
  const std::string target_canon = canonical_or_same(options.target_path);
  const std::string target_name = fs::path(target_canon).filename().string();
  const LinkCommand* target_link = nullptr;
  for (const LinkCommand& l : links) {
    std::string name = fs::path(l.output).filename().string();
    if (canonical_or_same(l.output) == target_canon || name == target_name || (target->soname && name == *target->soname))
      target_link = &l;
  }
  std::set<std::string> linked;
  if (target_link)
    for (const std::string& i : target_link->inputs) linked.insert(i);
  // The objects another program of the tree links (and the target does not, not even through
  // that link's output): a tree built with `make memcached` rebuilds memcached-debug from the
  // same sources under other object names, and those compiles are not the target's units.
  std::map<std::string, std::string> linked_elsewhere;  // object -> the program that links it
  if (target_link)
    for (const LinkCommand& l : links)
      if (&l != target_link && !linked.contains(l.output))
        for (const std::string& i : l.inputs) linked_elsewhere.emplace(i, fs::path(l.output).filename().string());
  const std::set<std::string>& target_files = target->source_files;
  std::vector<Unit> units;
  for (const CompileCommand& c : compiles) {
    // A source the build writes, compiles and removes again (libtool's .libs/PROGS.c, the
    // dlpreopen symbol table of a program linked with -dlopen, written at link time): in neither
    // tree, it has no original to compile; its object is a table of the objects' symbols.
    const fs::path rel_file = fs::path(c.file).lexically_relative(source_dir);
    if (!fs::exists(c.file) && !fs::exists(src / rel_file) &&
        std::find(touched.begin(), touched.end(), rel_file.string()) == touched.end()) {
      progress(fmt::format("{} is a temporary source of the build (written, compiled and removed again, as libtool's "
                           "dlpreopen symbol table): not diffed",
                           rel_file.string()));
      continue;
    }
    bool in_link = linked.contains(c.output) || (c.one_step && linked.contains(c.file));
    bool by_name = target_files.empty() || target_files.contains(fs::path(c.file).filename().string());
    if (!db.empty()) by_name = true;  // the database lists the project's units; the diff chose them
    if (target_link && !in_link && !by_name) {
      progress(fmt::format("{} is recompiled but not linked into {}: skipped", fs::relative(c.file, source_dir).string(), target_name));
      continue;
    }
    if (auto other = linked_elsewhere.find(c.output); target_link && !in_link && other != linked_elsewhere.end()) {
      progress(fmt::format("{} is recompiled for {}, not for {}: skipped", fs::relative(c.file, source_dir).string(),
                           other->second, target_name));
      continue;
    }
    if (!target_link && !by_name) continue;
    auto u = std::find_if(units.begin(), units.end(), [&](const Unit& x) { return x.file == c.file; });
    if (u == units.end()) u = units.insert(units.end(), Unit{c.file, {}});
    if (std::any_of(u->candidates.begin(), u->candidates.end(), [&](const CompileCommand& x) { return x.argv == c.argv; }))
      continue;
    // Best first: the compile whose object the target's link used, then PIC for a library.
    bool lib = target->soname.has_value();
    auto rank = [&](const CompileCommand& x) {
      return (linked.contains(x.output) || (x.one_step && linked.contains(x.file)) ? 0 : 2) + (is_pic(x) == lib ? 0 : 1);
    };
    auto at = std::find_if(u->candidates.begin(), u->candidates.end(), [&](const CompileCommand& x) { return rank(c) < rank(x); });
    u->candidates.insert(at, c);
  }
  if (units.empty())
    return fail(make_error(ErrorKind::not_found, "none of the units the build recompiled is part of {} ({} recompiled)",
                           options.target_path, compiles.size()));
  for (const Unit& u : units) result.recompiled.push_back(fs::relative(u.file, source_dir).string());
  for (const Unit& u : units)
    if (uses_lto(u.candidates.front()))
      return fail(make_error(ErrorKind::unsupported, "{}", lto_refusal(fs::relative(u.file, source_dir).string())));
  progress(fmt::format("{} unit(s) to diff: {}", units.size(), fmt::join(result.recompiled, ", ")));

  // 3. The fixed sources keep the original's line numbers outside the changed lines (#line), so
  //    only code the fix changed differs (not every function below an added line).
  step("line directives");
  std::set<std::string> relined;
  auto keep_lines = [&](const std::string& rel) -> Result<void> {
    if (options.keep_line_numbers == false || !relined.insert(rel).second) return {};
    fs::path o = source_dir / rel, p = src / rel;
    if (!fs::is_regular_file(o) || !fs::is_regular_file(p)) return {};
    auto n = keep_original_lines_in_file(o.string(), p.string());
    if (!n) return std::move(n).error();
    if (*n) progress(fmt::format("{}: {} #line directive(s) keep the original line numbers", rel, *n));
    result.line_directives += *n;
    return {};
  };
  for (const std::string& f : touched)
    if (auto r = keep_lines(f); !r) return fail(std::move(r).error());
  for (const Unit& u : units)
    if (auto r = keep_lines(fs::relative(u.file, source_dir).string()); !r) return fail(std::move(r).error());

  // 4. Each unit compiled as the original (in the source tree, read only) and as fixed (in the
  //    copy), with the builder's section flags; each pair diffed against the target.
  // The cache of original objects (object_cache.h): none with --no-cache or without a home.
  std::optional<ObjectCache> cache;
  if (options.object_cache) {
    std::optional<fs::path> dir = options.object_cache_dir ? std::optional<fs::path>(*options.object_cache_dir)
                                                           : default_object_cache_dir();
    if (dir) cache.emplace(*dir, default_object_cache_bytes());
    else progress("no cache of original objects: neither XDG_CACHE_HOME nor HOME is set");
  }
  fs::create_directories(work / "orig");
  fs::create_directories(work / "patched");
  std::vector<DiffResult> parts;
  std::string fixed_out;
  std::vector<std::pair<std::string, std::string>> object_pairs;  // for the type-layout report
  for (size_t i = 0; i < units.size(); ++i) {
    const Unit& u = units[i];
    const std::string rel = fs::relative(u.file, source_dir).string();
    std::optional<DiffResult> chosen;
    for (size_t k = 0; k < u.candidates.size(); ++k) {
      const CompileCommand& orig_cmd = u.candidates[k];
      CompileCommand fixed_cmd = orig_cmd;
      rebase(fixed_cmd, source_dir.string(), src.string());
      const std::string name = fmt::format("{}-{}-{}.o", i, k, fs::path(u.file).stem().string());
      // Where the original comes from, first to last: the project's own object when its command
      // already has the builder's section flags (and it is not older than the source); the cache
      // of original objects; a compile. The code verification against the target still decides:
      // if it fails for the own or a cached object, the original is compiled.
      const std::optional<fs::path> own = own_object(orig_cmd);
      Original from = own ? Original::own : cache ? Original::cache : Original::compile;
      bool lean = can_drop_var_tracking(orig_cmd);
      bool next_candidate = false;
      for (;;) {
        const bool reuse = from == Original::own;
        const CompileCommand orig_c = lean ? without_var_tracking(orig_cmd) : orig_cmd;
        const CompileCommand fixed_c = lean ? without_var_tracking(fixed_cmd) : fixed_cmd;
        const fs::path orig_o = reuse ? *own : work / "orig" / name, fixed_o = work / "patched" / name;
        step("compile " + rel);
        if (reuse)
          progress(fmt::format("compiling the fixed {}; the original is the project's own {} (its command has "
                               "-ffunction-sections -fdata-sections)",
                               rel, fs::relative(*own, source_dir).string()));
        else
          progress(fmt::format("compiling the original{} and the fixed {}{} (at the same time)",
                               from == Original::cache ? " (unless the cache has it)" : "", rel,
                               u.candidates.size() > 1 ? fmt::format(" (command {} of {})", k + 1, u.candidates.size()) : ""));
        const std::string fixed_compile =
            ns_prefix.empty() ? object_command(fixed_c, fixed_o) : in_copy(object_command(orig_c, fixed_o));
        auto still = [&](double s) { progress(fmt::format("still compiling {} ({:.0f} s so far)", rel, s)); };
        auto original = [&, from]() -> Side {
          if (from == Original::own) return Side{0, {}, {}, "original: the project's own object", {}, false, {}};
          const std::string cmd = object_command(orig_c, orig_o);
          if (from == Original::compile) {
            Side s = run_side(cmd);
            s.note = cache ? "original compiled, not cached" : "original compiled (no cache)";
            return s;
          }
          auto key = cache->key(orig_c);
          std::string why, log_key;
          if (key) {
            log_key = fmt::format("object cache: key {} of the original {} from\n{}", key->hex, rel, key->text);
            switch (cache->fetch(key->hex, orig_o, &why)) {
              case CacheFetch::hit:
                return Side{0, {}, log_key + fmt::format("object cache: hit {}\n", cache->entry_path(key->hex).string()),
                            "original from the cache", {}, true, cache->entry_path(key->hex).string()};
              case CacheFetch::damaged:
              case CacheFetch::miss:
                break;
            }
          }
          Side s = run_side(cmd);
          s.log = log_key + s.log;
          s.message = why;
          if (!key) {
            s.note = "original compiled, not cacheable";
            s.message = fmt::format("{}: the original is not cached: {}", rel, key.error().message);
          } else if (s.rc == 0) {
            auto stored = cache->store(key->hex, orig_o);
            s.note = stored ? "original compiled, stored in the cache" : "original compiled, not stored";
            if (!stored) s.message = fmt::format("{}: the original was not stored in the cache: {}", rel, stored.error().message);
          }
          return s;
        };
        auto [orig_side, fixed_side] = run_pair(original, fixed_compile, log, still, options.heartbeat_seconds);
        out = orig_side.out;
        fixed_out = fixed_side.out;
        step_note = orig_side.note;
        if (!orig_side.message.empty()) progress(orig_side.message);
        if (orig_side.from_cache)
          progress(fmt::format("{}: the original from the cache ({})", rel, cache->dir().string()));
        if (lean && (orig_side.rc != 0 || fixed_side.rc != 0) &&
            (out + fixed_out).find("var-tracking") != std::string::npos) {
          progress(fmt::format("{}: the compiler refuses -fno-var-tracking: compiling with the project's flags as they are", rel));
          lean = false;
          continue;
        }
        if (orig_side.rc != 0)
          return fail(make_error(ErrorKind::io,
                                 "compiling the original {} in {} failed (the source tree must be the built tree the target "
                                 "came from):{}",
                                 rel, source_dir.string(), trimmed(out)));
        if (fixed_side.rc != 0) {
          // A generated header the record-only mode left empty: the real build writes it.
          if (record_only) return again_with_real_build(fmt::format("compiling the fixed {} failed after the record-only build", rel));
          return fail(make_error(ErrorKind::io, "compiling the fixed {} failed:{}", rel, trimmed(fixed_out)));
        }
        step("diff " + rel);
        progress(fmt::format("diffing the two objects of {}", rel));
        DiffOptions d{orig_o.string(), fixed_o.string(), &*target};
        auto r = diff_objects(d);
        if (r)
          for (const auto& [pass, seconds] : r->timings) sub_steps.push_back({"diff " + rel + ": " + pass, seconds});
        const bool built_differently = !r && r.error().message.find(kTargetBuiltDifferently) != std::string::npos;
        if (lean && !reuse && built_differently) {  // the original compiled (or cached) without variable tracking
          progress(fmt::format("{}: without variable tracking the original is not the target's code; compiling with "
                               "the project's flags as they are",
                               rel));
          lean = false;
          continue;
        }
        if (reuse && built_differently) {
          progress(fmt::format("{}: the project's own object is not the code in the target; compiling the original", rel));
          from = cache ? Original::cache : Original::compile;
          continue;
        }
        if (orig_side.from_cache && built_differently) {
          progress(fmt::format("{}: the original from the cache is not the code in the target; compiling it (the entry "
                               "is removed)", rel));
          std::error_code rm;
          fs::remove(orig_side.entry, rm);
          from = Original::compile;
          continue;
        }
        if (built_differently && k + 1 < u.candidates.size()) {
          progress(fmt::format("{}: that compile is not the one in the target; trying the next", rel));
          next_candidate = true;
          break;
        }
        if (!r) return fail(std::move(r).error().context(rel));
        object_pairs.emplace_back(orig_o.string(), fixed_o.string());
        chosen = std::move(r.value());
        break;
      }
      if (next_candidate) continue;
      break;
    }
    if (!chosen) continue;
    DiffResult& r = *chosen;
    for (const auto& w : r.warnings) result.warnings.push_back(rel + ": " + w);
    for (const auto& l : r.line_only) result.line_only.push_back(l);
    result.originals.insert(r.originals.begin(), r.originals.end());
    result.kept_new.insert(r.kept_new.begin(), r.kept_new.end());
    if (r.functions.empty()) continue;
    progress(fmt::format("{}: {} function(s) changed or new", rel, r.functions.size()));
    result.changed_files.push_back(rel);
    std::map<std::string, std::string> starts;  // thread start function -> who starts it
    if (auto found = thread_start_functions(object_pairs.back().first)) starts = std::move(*found);
    for (const auto& f : r.functions) {
      result.functions.push_back(f);
      if (auto it = starts.find(f.name); it != starts.end() && f.status == Status::changed)
        result.warnings.push_back(fmt::format(
            "{}: {} is changed: it is a thread's start function ({} passes it to pthread_create), so a thread it "
            "started has it on its stack until the thread ends and `livegraft apply` cannot switch that thread "
            "(only `force` can); move the fix into a function {} calls",
            rel, f.name, it->second, f.name));
      // What will surely fail at apply, said now (item: build-time warnings).
      if (f.status == Status::changed && (f.name == "main" || f.name == "__libc_start_main"))
        result.warnings.push_back(fmt::format(
            "{}: {} is changed: the thread that runs it never leaves it, so `livegraft apply` cannot switch that "
            "thread (the old {} keeps running); move the fix into a function {} calls",
            rel, f.name, f.name, f.name));
    }
    for (const std::string& e : r.externals) {
      bool known = std::any_of(target->symbols.begin(), target->symbols.end(), [&](const TargetSymbol& s) { return s.name == e; });
      if (!known && !target->imports.contains(e) && !target->exports.contains(e))
        result.warnings.push_back(fmt::format(
            "{}: the patch uses {}, which {} neither defines nor imports: the loader must find it in another loaded "
            "object (dlsym), or apply fails",
            rel, e, fs::path(target_canon).filename().string()));
    }
    parts.push_back(std::move(r));
  }

  // 5. Types whose layout the fix changes (DWARF of both builds): objects of the old layout
  //    alive during the switch would be misread by the new code.
  step("type layouts");
  if (!object_pairs.empty()) progress("comparing the type layouts in the DWARF of both builds");
  std::set<std::string> patched_functions;
  for (const FunctionChange& f : result.functions) patched_functions.insert(f.name);
  for (const auto& [o, p] : object_pairs) {
    auto changes = compare_type_layouts(o, p, patched_functions);
    if (!changes) {
      progress(fmt::format("type layouts not compared: {}", changes.error().message));
      continue;
    }
    for (TypeLayoutChange& c : *changes) {
      result.warnings.push_back(describe(c));
      result.type_changes.push_back(std::move(c));
    }
  }

  if (parts.empty())
    return fail(make_error(ErrorKind::not_found, "the fix changes no function in {} (recompiled: {}{})", options.target_path,
                           fmt::join(result.recompiled, ", "),
                           result.line_only.empty() ? "" : fmt::format("; only __LINE__ values in {}", fmt::join(result.line_only, ", "))));

  PatchMetadata meta;
  std::string stem = fs::path(options.output_path).stem().string();
  meta.name = sanitize_patch_name(options.patch_name.empty() ? stem : options.patch_name);
  meta.build_id = target->build_id;
  meta.object_name = target->soname;
  meta.immediate = options.immediate_ok;
  std::vector<const DiffResult*> ptrs;
  for (const DiffResult& p : parts) ptrs.push_back(&p);
  step("emit");
  progress(fmt::format("writing {}", options.output_path));
  auto w = emit_patch_object(ptrs, meta, options.output_path);
  if (!w) return fail(std::move(w).error());
  step("");
  result.total_seconds = since(start);
  progress("times: " + describe_timings(result));
  success = true;
  return result;
}

}  // namespace lg::builder
