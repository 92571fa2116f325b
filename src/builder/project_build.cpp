#include "builder/project_build.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "builder/emit.h"
#include "builder/target.h"
#include "builder/verify.h"

namespace fs = std::filesystem;

namespace lg::builder {

namespace {

// One compilation: the directory it runs in and its argv (argv[0] the compiler).
struct CompileCommand {
  std::string directory;
  std::vector<std::string> argv;
  std::string file;  // the source file, absolute
};

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Runs a shell command with its output appended to `log`; returns its exit status.
int run_logged(const std::string& cmd, const fs::path& log) {
  std::string full = "( " + cmd + " ) >>" + shell_quote(log.string()) + " 2>&1";
  int status = std::system(full.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::vector<std::string> split_command(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  bool in_single = false, in_double = false, have = false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (in_single) { if (c == '\'') in_single = false; else cur += c; continue; }
    if (in_double) {
      if (c == '"') in_double = false;
      else if (c == '\\' && i + 1 < s.size()) cur += s[++i];
      else cur += c;
      continue;
    }
    if (c == '\'') { in_single = have = true; continue; }
    if (c == '"') { in_double = have = true; continue; }
    if (c == '\\' && i + 1 < s.size()) { cur += s[++i]; have = true; continue; }
    if (c == ' ' || c == '\t' || c == '\n') {
      if (have || !cur.empty()) out.push_back(cur);
      cur.clear();
      have = false;
      continue;
    }
    cur += c;
  }
  if (have || !cur.empty()) out.push_back(cur);
  return out;
}

std::string abs_in(const std::string& dir, const std::string& file) {
  fs::path p(file);
  return (p.is_absolute() ? p : fs::path(dir) / p).lexically_normal().string();
}

Result<std::vector<CompileCommand>> read_compile_commands(const fs::path& json_path) {
  std::ifstream in(json_path);
  nlohmann::json j;
  try {
    in >> j;
  } catch (const std::exception& e) {
    return make_error(ErrorKind::invalid_argument, "{}: not valid JSON: {}", json_path.string(), e.what());
  }
  std::vector<CompileCommand> out;
  for (const auto& e : j) {
    CompileCommand c;
    c.directory = e.value("directory", "");
    if (e.contains("arguments")) c.argv = e["arguments"].get<std::vector<std::string>>();
    else c.argv = split_command(e.value("command", ""));
    c.file = abs_in(c.directory, e.value("file", ""));
    if (!c.argv.empty()) out.push_back(std::move(c));
  }
  return out;
}

// The compiler wrapper: records each compilation (cwd, argv; NUL-separated) and runs the real
// compiler unchanged, so the original build is the project's own. With LIVEGRAFT_RECORD_ONLY
// set, a compile (-c) or link (-o) only creates its output file empty and runs nothing (the
// record-only pass: every command of `make -B` without compiling the project); other
// invocations (-E, --version, -dumpmachine, -print-*) still run, since a build may use their
// output.
void write_wrapper(const fs::path& path, const std::string& real, const fs::path& record_dir) {
  std::ofstream out(path);
  out << "#!/bin/sh\n"
      << "f=$(mktemp " << shell_quote((record_dir / "cmd.XXXXXX").string()) << ")\n"
      << "{ printf '%s\\0' \"$PWD\" " << shell_quote(real) << "; for a in \"$@\"; do printf '%s\\0' \"$a\"; done; } > \"$f\"\n"
      << "if [ -n \"$LIVEGRAFT_RECORD_ONLY\" ]; then\n"
      << "  c=; o=; p=; srcs=; fake=1\n"
      << "  for a in \"$@\"; do\n"
      << "    [ \"$p\" = -o ] && o=$a\n"
      << "    case $a in -c) c=1 ;; -E|-S|-M|-MM|--version|-v|-dump*|-print-*|--print-*) fake= ;;\n"
      << "      -o?*) o=${a#-o} ;; -*) ;; *.c|*.cc|*.cpp|*.cxx|*.C) srcs=\"$srcs $a\" ;; esac\n"
      << "    p=$a\n"
      << "  done\n"
      << "  if [ -n \"$fake\" ] && { [ -n \"$c\" ] || [ -n \"$o\" ]; }; then\n"
      << "    if [ -n \"$o\" ]; then : > \"$o\"; else for s in $srcs; do b=${s##*/}; : > \"${b%.*}.o\"; done; fi\n"
      << "    exit 0\n"
      << "  fi\n"
      << "fi\n"
      << "exec " << shell_quote(real) << " \"$@\"\n";
  out.close();
  fs::permissions(path, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec);
}

enum class RecordMode { record_only, build, build_overriding_cc };

// The absolute path of `name` (a bare command name) in $PATH, skipping `skip`; empty if absent.
std::string find_in_path(const std::string& name, const fs::path& skip) {
  if (name.find('/') != std::string::npos) return fs::exists(name) ? name : std::string();
  const char* path = std::getenv("PATH");
  std::stringstream ss(path ? path : "/usr/local/bin:/usr/bin:/bin");
  for (std::string dir; std::getline(ss, dir, ':');) {
    if (dir.empty() || fs::path(dir) == skip) continue;
    fs::path candidate = fs::path(dir) / name;
    if (access(candidate.c_str(), X_OK) == 0 && !fs::is_directory(candidate)) return candidate.string();
  }
  return {};
}

// Puts wrappers under `bin` for every compiler name a build may call (cc, gcc, g++, ... and
// $CC/$CXX when they are one word), so that a Makefile that sets its own CC (`CC= gcc
// -std=gnu99`) still goes through a wrapper and keeps its own flags.
struct Wrappers {
  std::string env;  // prefix for the build command: PATH with the wrappers first, CC and CXX
  fs::path cc, cxx;
};
Wrappers install_wrappers(const fs::path& bin, const fs::path& record_dir) {
  fs::create_directories(bin);
  std::set<std::string> names = {"cc", "gcc", "c++", "g++", "clang", "clang++", "x86_64-linux-gnu-gcc", "x86_64-linux-gnu-g++"};
  std::string cc = "cc", cxx = "c++";
  for (auto [var, def] : {std::pair{"CC", &cc}, std::pair{"CXX", &cxx}}) {
    const char* v = std::getenv(var);
    if (v && *v && split_command(v).size() == 1) {
      names.insert(fs::path(v).filename().string());
      *def = fs::path(v).filename().string();
      if (fs::path(v).is_absolute()) {
        write_wrapper(bin / *def, v, record_dir);
        names.erase(*def);
      }
    }
  }
  for (const std::string& n : names) {
    std::string real = find_in_path(n, bin);
    if (!real.empty()) write_wrapper(bin / n, real, record_dir);
  }
  const char* path = std::getenv("PATH");
  Wrappers w{fmt::format("PATH={}:{} CC={} CXX={}", shell_quote(bin.string()), shell_quote(path ? path : "/usr/bin:/bin"),
                         shell_quote((bin / cc).string()), shell_quote((bin / cxx).string())),
             bin / cc, bin / cxx};
  return w;
}

std::vector<CompileCommand> read_records(const fs::path& record_dir) {
  std::vector<CompileCommand> out;
  for (const auto& e : fs::directory_iterator(record_dir)) {
    std::ifstream in(e.path(), std::ios::binary);
    std::vector<std::string> fields;
    for (std::string f; std::getline(in, f, '\0');) fields.push_back(f);
    if (fields.size() < 2) continue;
    CompileCommand c;
    c.directory = fields[0];
    c.argv.assign(fields.begin() + 1, fields.end());
    bool compiles = std::find(c.argv.begin(), c.argv.end(), "-c") != c.argv.end();
    for (const std::string& a : c.argv) {
      static const char* const exts[] = {".c", ".cc", ".cpp", ".cxx", ".C"};
      for (const char* x : exts)
        if (compiles && a.size() > strlen(x) && a.ends_with(x) && a[0] != '-') c.file = abs_in(c.directory, a);
    }
    if (!c.file.empty()) out.push_back(std::move(c));
  }
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

bool is_source(const std::string& f) {
  for (const char* x : {".c", ".cc", ".cpp", ".cxx", ".C"})
    if (f.ends_with(x)) return true;
  return false;
}

// Rewrites a compile command to produce `object` with the section flags; drops -o and
// dependency-file options, keeps everything else (the project's own flags).
std::string object_command(const CompileCommand& c, const fs::path& object) {
  std::string cmd = "cd " + shell_quote(c.directory) + " && " + shell_quote(c.argv[0]);
  for (size_t i = 1; i < c.argv.size(); ++i) {
    const std::string& a = c.argv[i];
    if (a == "-o" || a == "-MF" || a == "-MT" || a == "-MQ") { ++i; continue; }
    if (a == "-MD" || a == "-MMD" || a == "-MP" || a.starts_with("-Wp,-MD") || a.starts_with("-Wp,-MMD")) continue;
    if (a == "-ffunction-sections" || a == "-fdata-sections") continue;
    cmd += " " + shell_quote(a);
  }
  cmd += " -ffunction-sections -fdata-sections -o " + shell_quote(object.string());
  return cmd;
}

}  // namespace

Result<ProjectBuildResult> build_project_patch(const ProjectBuildOptions& options) {
  auto progress = [&](const std::string& s) { if (options.progress) options.progress(s); };
  ProjectBuildResult result;
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
    return build_project_patch(again);
  };
  auto fail = [&](Error e) {
    e.hint = fmt::format("the work directory is kept: {} (build.log has the compiler output)", work.string());
    return e;
  };
  const fs::path log = work / "build.log";
  const fs::path src = work / "src";
  const fs::path source_dir = fs::canonical(options.source_dir);

  progress(fmt::format("reading the target {}", options.target_path));
  auto target = load_target(options.target_path);
  if (!target) return fail(std::move(target).error());

  progress(fmt::format("copying {} to {}", source_dir.string(), src.string()));
  std::error_code ec;
  fs::remove_all(src, ec);
  fs::copy(source_dir, src, fs::copy_options::recursive | fs::copy_options::copy_symlinks, ec);
  if (ec) return fail(make_error(ErrorKind::io, "copying {}: {}", source_dir.string(), ec.message()));

  // The project's compile commands: compile_commands.json, or a build run through the wrapper.
  std::vector<CompileCommand> commands;
  fs::path db;
  for (const char* c : {"compile_commands.json", "build/compile_commands.json"})
    if (fs::exists(source_dir / c)) db = source_dir / c;
  if (!db.empty()) {
    progress(fmt::format("using {}", db.string()));
    auto cc = read_compile_commands(db);
    if (!cc) return fail(std::move(cc).error());
    // Compile in the copy: rewrite the tree's paths.
    for (CompileCommand& c : *cc) {
      auto rebase = [&](std::string& s) {
        if (s.starts_with(source_dir.string())) s = src.string() + s.substr(source_dir.string().size());
      };
      rebase(c.directory);
      rebase(c.file);
      for (std::string& a : c.argv) rebase(a);
    }
    commands = std::move(*cc);
  }
  // Without a compile_commands.json: the project's build command with the compilers wrapped.
  // First a record-only pass (every command recorded, nothing compiled: fast); when it fails,
  // records nothing, or a recorded command does not compile in the copy (a generated header
  // the record-only pass left empty), the real build.
  const std::string build = options.build_command.value_or("make -B");
  std::optional<Wrappers> wrappers;
  auto record_build = [&](RecordMode mode) -> Result<std::vector<CompileCommand>> {
    if (!wrappers) wrappers = install_wrappers(work / "bin", work / "records");
    std::error_code ec2;
    fs::remove_all(work / "records", ec2);
    fs::create_directories(work / "records");
    progress(fmt::format("{} the original with `{}` (compilers wrapped to record commands{})",
                         mode == RecordMode::record_only ? "recording the commands that build" : "building", build,
                         mode == RecordMode::build_overriding_cc ? ", CC/CXX overridden on the make command line" : ""));
    std::string cmd = fmt::format("cd {} && {}{} {}", shell_quote(src.string()),
                                  mode == RecordMode::record_only ? "LIVEGRAFT_RECORD_ONLY=1 " : "", wrappers->env, build);
    // Last resort for a Makefile whose CC names a compiler by absolute path (not found through
    // $PATH): the make command-line override, which replaces the Makefile's CC and its flags.
    if (mode == RecordMode::build_overriding_cc)
      cmd += fmt::format(" CC={} CXX={}", shell_quote(wrappers->cc.string()), shell_quote(wrappers->cxx.string()));
    if (run_logged(cmd, log) != 0)
      return make_error(ErrorKind::io, "the original build (`{}`) failed", build);
    return read_records(work / "records");
  };
  // The real build, and when it compiled nothing through the wrappers, the CC override.
  auto real_build = [&]() -> Result<std::vector<CompileCommand>> {
    auto full = record_build(RecordMode::build);
    if (full && full->empty()) full = record_build(RecordMode::build_overriding_cc);
    return full;
  };
  bool record_only = false;
  if (db.empty() && options.record_only_pass) {
    auto r = record_build(RecordMode::record_only);
    if (r && !r->empty()) {
      commands = std::move(*r);
      record_only = true;
    } else {
      auto full = real_build();
      if (!full) return fail(std::move(full).error());
      commands = std::move(*full);
    }
  } else if (db.empty()) {
    auto full = real_build();
    if (!full) return fail(std::move(full).error());
    commands = std::move(*full);
  }
  if (commands.empty())
    return fail(make_error(ErrorKind::not_found, "no compile commands found (no compile_commands.json, and the build compiled nothing through $CC/$CXX)"));

  // Which translation units the fix touches.
  std::vector<std::string> touched = files_in_diff(options.diff_path);
  if (touched.empty()) return fail(make_error(ErrorKind::invalid_argument, "{} changes no file", options.diff_path));
  bool header_changed = std::any_of(touched.begin(), touched.end(), [](auto& f) { return !is_source(f); });
  std::vector<const CompileCommand*> units;
  auto select_units = [&] {
    units.clear();
    for (const CompileCommand& c : commands) {
      bool match = header_changed;  // a changed header may affect any unit: diff them all
      for (const std::string& f : touched)
        if (c.file == (src / f).lexically_normal().string()) match = true;
      if (match && std::none_of(units.begin(), units.end(), [&](auto* u) { return u->file == c.file; })) units.push_back(&c);
    }
  };
  select_units();
  if (units.empty()) return fail(make_error(ErrorKind::not_found, "none of the files the fix changes is compiled by the build"));

  fs::create_directories(work / "orig");
  fs::create_directories(work / "patched");
  auto object_name = [&](size_t i, const CompileCommand& c) { return fmt::format("{}-{}.o", i, fs::path(c.file).stem().string()); };
  auto compile_originals = [&]() -> bool {
    for (size_t i = 0; i < units.size(); ++i) {
      progress(fmt::format("compiling the original {}", fs::relative(units[i]->file, src).string()));
      if (run_logged(object_command(*units[i], work / "orig" / object_name(i, *units[i])), log) != 0) return false;
    }
    return true;
  };
  if (!compile_originals()) {
    if (!record_only) return fail(make_error(ErrorKind::io, "compiling the original failed (see build.log)"));
    progress("a recorded command did not compile after the record-only pass: running the real build");
    auto full = real_build();
    if (!full) return fail(std::move(full).error());
    commands = std::move(*full);
    select_units();
    if (units.empty()) return fail(make_error(ErrorKind::not_found, "none of the files the fix changes is compiled by the build"));
    if (!compile_originals()) return fail(make_error(ErrorKind::io, "compiling the original failed (see build.log)"));
  }
  progress(fmt::format("applying {}", options.diff_path));
  if (run_logged(fmt::format("cd {} && patch -p1 --batch --forward < {}", shell_quote(src.string()),
                             shell_quote(fs::absolute(options.diff_path).string())), log) != 0)
    return fail(make_error(ErrorKind::invalid_argument, "{} does not apply to {} with patch -p1", options.diff_path, source_dir.string()));

  std::vector<DiffResult> parts;
  for (size_t i = 0; i < units.size(); ++i) {
    std::string rel = fs::relative(units[i]->file, src).string();
    progress(fmt::format("compiling the patched {}", rel));
    if (run_logged(object_command(*units[i], work / "patched" / object_name(i, *units[i])), log) != 0)
      return fail(make_error(ErrorKind::io, "compiling the patched {} failed", rel));
    DiffOptions d{(work / "orig" / object_name(i, *units[i])).string(), (work / "patched" / object_name(i, *units[i])).string(), &*target};
    auto r = diff_objects(d);
    // A record-only pass leaves generated files empty; an original compiled against such a
    // file compiles but is not the code that runs: verification says so, the real build fixes it.
    if (!r && record_only && r.error().message.find(kTargetBuiltDifferently) != std::string::npos)
      return again_with_real_build(fmt::format("{}: the rebuilt original differs from the target after the record-only pass", rel));
    if (!r) return fail(std::move(r).error().context(rel));
    for (const auto& w : r->warnings) result.warnings.push_back(rel + ": " + w);
    if (r->functions.empty()) continue;
    progress(fmt::format("{}: {} function(s) changed or new", rel, r->functions.size()));
    result.changed_files.push_back(rel);
    for (const auto& f : r->functions) result.functions.push_back(f);
    parts.push_back(std::move(r.value()));
  }

  PatchMetadata meta;
  std::string stem = fs::path(options.output_path).stem().string();
  meta.name = sanitize_patch_name(options.patch_name.empty() ? stem : options.patch_name);
  meta.build_id = target->build_id;
  meta.object_name = target->soname;
  std::vector<const DiffResult*> ptrs;
  for (const DiffResult& p : parts) ptrs.push_back(&p);
  progress(fmt::format("writing {}", options.output_path));
  auto w = emit_patch_object(ptrs, meta, options.output_path);
  if (!w) return fail(std::move(w).error());
  success = true;
  return result;
}

}  // namespace lg::builder
