#include "builder/compile_commands.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace fs = std::filesystem;

namespace lg::builder {

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
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

bool is_source_file(const std::string& f) {
  for (const char* x : {".c", ".cc", ".cpp", ".cxx", ".c++", ".C"})
    if (f.size() > strlen(x) && f.ends_with(x)) return true;
  return false;
}

namespace {

std::string abs_in(const std::string& dir, const std::string& file) {
  fs::path p(file);
  return (p.is_absolute() ? p : fs::path(dir) / p).lexically_normal().string();
}

// Options whose value is the next argument (gcc's, the ones a build passes).
bool takes_value(const std::string& a) {
  static const std::set<std::string> with_value = {
      "-o", "-I", "-D", "-U", "-include", "-imacros", "-isystem", "-iquote", "-idirafter", "-isysroot",
      "-iprefix", "-iwithprefix", "-iwithprefixbefore", "-imultilib", "-x", "-MF", "-MT", "-MQ", "-L", "-l",
      "-Xlinker", "-Xassembler", "-Xpreprocessor", "-T", "-u", "-z", "-e", "--param", "-aux-info", "-B"};
  return with_value.contains(a);
}

bool is_linker_input(const std::string& a) {
  if (a.empty() || a[0] == '-') return false;
  if (a.ends_with(".o") || a.ends_with(".a") || a.ends_with(".so") || a.ends_with(".lo")) return true;
  return a.find(".so.") != std::string::npos;
}

// Arguments only a link uses (dropped when a one-step command is turned into a compile).
bool linker_only(const std::string& a) {
  for (const char* p : {"-l", "-L", "-Wl,", "-static", "-shared", "-pie", "-no-pie", "-rdynamic", "-nostartfiles",
                        "-nostdlib", "-nodefaultlibs", "-pthread-link"})
    if (a.starts_with(p)) return true;
  return a == "-s";
}

bool is_compiler_launcher(const std::string& a) {
  const std::string name = fs::path(a).filename().string();
  return name == "ccache" || name == "sccache" || name == "distcc" || name == "icecc";
}

}  // namespace

void classify_invocation(const std::string& directory, const std::vector<std::string>& argv, RecordedBuild& out) {
  if (argv.size() < 2) return;
  bool compile = false;
  std::string output;
  std::vector<std::string> sources, inputs;
  for (size_t i = 1; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (a == "-E" || a == "-S" || a == "-M" || a == "-MM" || a == "--version" || a == "-v" || a == "-fsyntax-only" ||
        a == "--help" || a.starts_with("-dump") || a.starts_with("-print-") || a.starts_with("--print-"))
      return;  // neither compiles to an object nor links
    if (a == "-c") { compile = true; continue; }
    if (takes_value(a)) {
      if (a == "-o" && i + 1 < argv.size()) output = argv[i + 1];
      ++i;
      continue;
    }
    if (a.starts_with("-o") && a.size() > 2) { output = a.substr(2); continue; }
    if (a.starts_with("-")) continue;
    if (is_source_file(a)) sources.push_back(abs_in(directory, a));
    else if (is_linker_input(a)) inputs.push_back(abs_in(directory, a));
  }
  if (compile) {
    for (const std::string& s : sources) {
      CompileCommand c{directory, argv, s, {}, false};
      c.output = !output.empty() && sources.size() == 1 ? abs_in(directory, output)
                                                        : abs_in(directory, fs::path(s).stem().string() + ".o");
      out.compiles.push_back(std::move(c));
    }
    return;
  }
  if (sources.empty() && inputs.empty()) return;
  LinkCommand l{directory, abs_in(directory, output.empty() ? "a.out" : output), inputs};
  for (const std::string& s : sources) {
    out.compiles.push_back(CompileCommand{directory, argv, s, {}, true});
    l.inputs.push_back(s);
  }
  out.links.push_back(std::move(l));
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
  const std::string json_dir = fs::absolute(json_path).parent_path().string();
  for (const auto& e : j) {
    // A relative directory is relative to the database's own directory.
    std::string directory = abs_in(json_dir, e.value("directory", "."));
    std::vector<std::string> argv;
    if (e.contains("arguments")) argv = e["arguments"].get<std::vector<std::string>>();
    else argv = split_command(e.value("command", ""));
    // A compiler launcher first (Meson writes the ccache it found): the compiler is what follows.
    while (argv.size() > 1 && is_compiler_launcher(argv[0])) argv.erase(argv.begin());
    if (argv.empty()) continue;
    std::string file = abs_in(directory, e.value("file", ""));
    bool compile = std::find(argv.begin(), argv.end(), "-c") != argv.end();
    CompileCommand c{directory, argv, file, {}, !compile};
    if (e.contains("output")) c.output = abs_in(directory, e.value("output", ""));
    out.push_back(std::move(c));
  }
  return out;
}

namespace {

// The wrapper: records each invocation (cwd, real compiler, argv; NUL-separated) and runs the
// real compiler unchanged, so the build is the project's own. With LIVEGRAFT_RECORD_ONLY set,
// a compile (-c) or link (-o) only creates its output file empty and runs nothing (the
// record-only mode: every command of the build without compiling); other invocations (-E,
// --version, -dumpmachine, -print-*) still run, since a build may use their output.
void write_wrapper(const fs::path& path, const std::string& real, const fs::path& record_dir) {
  std::ofstream out(path);
  out << "#!/bin/sh\n"
      << "f=$(mktemp " << shell_quote((record_dir / "cmd.XXXXXX").string()) << ")\n"
      << "{ printf '%s\\0' \"$PWD\" " << shell_quote(real) << "; for a in \"$@\"; do printf '%s\\0' \"$a\"; done; } > \"$f\"\n"
      << "if [ -n \"$LIVEGRAFT_RECORD_ONLY\" ]; then\n"
      << "  c=; o=; p=; mf=; md=; srcs=; fake=1\n"
      << "  for a in \"$@\"; do\n"
      << "    [ \"$p\" = -o ] && o=$a\n"
      << "    [ \"$p\" = -MF ] && mf=$a\n"
      << "    case $a in -c) c=1 ;; -E|-S|-M|-MM|--version|-v|-dump*|-print-*|--print-*) fake= ;;\n"
      << "      -MD|-MMD) md=1 ;; -Wp,-MD,*|-Wp,-MMD,*) mf=${a#*,*,} ;;\n"
      << "      -o?*) o=${a#-o} ;; -*) ;; *.c|*.cc|*.cpp|*.cxx|*.C) srcs=\"$srcs $a\" ;; esac\n"
      << "    p=$a\n"
      << "  done\n"
      << "  if [ -n \"$fake\" ] && { [ -n \"$c\" ] || [ -n \"$o\" ]; }; then\n"
      // An empty but valid object (ar/ranlib/libtool handle it), and the dependency file a
      // build may move next (automake: mv -f .deps/x.Tpo .deps/x.Plo).
      << "    if [ -n \"$o\" ]; then cp " << shell_quote((path.parent_path() / "empty.o").string()) << " \"$o\"; else for s in $srcs; do b=${s##*/}; cp "
      << shell_quote((path.parent_path() / "empty.o").string()) << " \"${b%.*}.o\"; done; fi\n"
      << "    [ -n \"$mf\" ] && : > \"$mf\"\n"
      << "    [ -z \"$mf\" ] && [ -n \"$md\" ] && [ -n \"$o\" ] && : > \"${o%.*}.d\"\n"
      << "    exit 0\n"
      << "  fi\n"
      << "fi\n"
      << "exec " << shell_quote(real) << " \"$@\"\n";
  out.close();
  fs::permissions(path, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec);
}

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

}  // namespace

// Puts wrappers under `bin` for every compiler name a build may call, so that a Makefile that
// sets its own CC (`CC= gcc -std=gnu99`) keeps its flags and still runs the wrapper.
Wrappers install_wrappers(const fs::path& bin, const fs::path& record_dir) {
  fs::create_directories(bin);
  std::set<std::string> names = {"cc", "gcc", "c++", "g++", "clang", "clang++", "x86_64-linux-gnu-gcc", "x86_64-linux-gnu-g++"};
  for (const char* v : {"gcc-12", "g++-12", "x86_64-linux-gnu-gcc-12", "x86_64-linux-gnu-g++-12"}) names.insert(v);
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
  // What a record-only compile or link writes: an empty object (a valid ELF file, so a build's
  // ar, ranlib or libtool steps on it succeed).
  std::string cc_real = find_in_path("cc", bin);
  if (cc_real.empty()) cc_real = find_in_path("gcc", bin);
  std::string cmd = shell_quote(cc_real.empty() ? std::string("cc") : cc_real) + " -c -x c /dev/null -o " +
                    shell_quote((bin / "empty.o").string()) + " >/dev/null 2>&1";
  if (std::system(cmd.c_str()) != 0) std::ofstream(bin / "empty.o").put('\0');
  const char* path = std::getenv("PATH");
  // CCACHE_DISABLE: a launcher the build names (Meson's `ccache c++`) runs the wrapper found in
  // PATH and caches nothing (a record-only compile writes an empty object).
  Wrappers w{fmt::format("CCACHE_DISABLE=1 PATH={}:{} CC={} CXX={}", shell_quote(bin.string()), shell_quote(path ? path : "/usr/bin:/bin"),
                         shell_quote((bin / cc).string()), shell_quote((bin / cxx).string())),
             bin / cc, bin / cxx};
  return w;
}

RecordedBuild read_records(const fs::path& record_dir) {
  // In the order the commands ran (mktemp names are random; the modification time is not).
  std::vector<std::pair<fs::file_time_type, fs::path>> files;
  for (const auto& e : fs::directory_iterator(record_dir)) files.emplace_back(e.last_write_time(), e.path());
  std::sort(files.begin(), files.end());
  RecordedBuild out;
  for (const auto& [t, path] : files) {
    std::ifstream in(path, std::ios::binary);
    std::vector<std::string> fields;
    for (std::string f; std::getline(in, f, '\0');) fields.push_back(f);
    if (fields.size() < 2) continue;
    classify_invocation(fields[0], {fields.begin() + 1, fields.end()}, out);
  }
  return out;
}

bool uses_lto(const CompileCommand& c) {
  bool lto = false;
  for (const std::string& a : c.argv) {
    if (a == "-flto" || a.starts_with("-flto=")) lto = true;
    else if (a == "-fno-lto") lto = false;
  }
  return lto;
}

std::string lto_refusal(const std::string& what) {
  return fmt::format(
      "{} is compiled with link-time optimisation (-flto): the compiler writes GCC's intermediate code "
      "(.gnu.lto_* sections), and the machine code of the target is made at link time, optimised across "
      "units, so no unit's object holds the code of the target's functions; build the target without LTO "
      "(-fno-lto; Meson: -Db_lto=false; CMake: INTERPROCEDURAL_OPTIMIZATION off) to patch it live",
      what);
}

std::optional<std::vector<std::string>> unit_dependencies(const CompileCommand& c) {
  std::string depfile;
  for (size_t i = 0; i + 1 < c.argv.size(); ++i)
    if (c.argv[i] == "-MF") depfile = abs_in(c.directory, c.argv[i + 1]);
  if (depfile.empty() && !c.output.empty()) depfile = c.output + ".d";
  std::ifstream in(depfile);
  if ((depfile.empty() || !in) && !c.output.empty() && fs::exists(fs::path(c.directory) / "build.ninja")) {
    // Ninja (Meson, CMake's Ninja generator) keeps what the depfile said in .ninja_deps and
    // deletes the file: `ninja -t deps OBJECT` prints "OBJECT: #deps N, ..." then one file a line.
    std::string cmd = "cd " + shell_quote(c.directory) + " && ninja -t deps " +
                      shell_quote(fs::path(c.output).lexically_relative(c.directory).string()) + " 2>/dev/null";
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) return std::nullopt;
    std::vector<std::string> out;
    bool found = false;
    char line[4096];
    while (fgets(line, sizeof line, p)) {
      std::string l(line);
      while (!l.empty() && (l.back() == '\n' || l.back() == '\r')) l.pop_back();
      if (l.find(": #deps ") != std::string::npos) found = true;
      else if (found && l.starts_with("    ")) out.push_back(abs_in(c.directory, l.substr(4)));
    }
    if (pclose(p) != 0 || !found) return std::nullopt;
    return out;
  }
  if (depfile.empty() || !in) return std::nullopt;
  // Make syntax: `target: dep dep \<newline> dep`, a space in a name escaped as `\ `.
  std::vector<std::string> out;
  std::string word;
  auto flush = [&] {
    if (!word.empty() && !word.ends_with(":")) out.push_back(abs_in(c.directory, word));
    word.clear();
  };
  for (char ch; in.get(ch);) {
    if (ch == '\\') {
      char next = 0;
      if (!in.get(next)) break;
      if (next == '\n') { flush(); continue; }
      if (next == ' ') { word += ' '; continue; }
      word += ch;
      word += next;
      continue;
    }
    if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r') flush();
    else word += ch;
  }
  flush();
  return out;
}

std::vector<std::string> object_argv(const CompileCommand& c, const fs::path& object) {
  std::vector<std::string> out = {c.argv[0], "-c"};
  for (size_t i = 1; i < c.argv.size(); ++i) {
    const std::string& a = c.argv[i];
    if (a == "-o" || a == "-MF" || a == "-MT" || a == "-MQ" || a == "-Xlinker" || a == "-T" || a == "-u" || a == "-z" ||
        a == "-L" || a == "-l") {
      ++i;
      continue;
    }
    if (a == "-c" || (a.starts_with("-o") && a.size() > 2)) continue;
    if (a == "-MD" || a == "-MMD" || a == "-MP" || a.starts_with("-Wp,-MD") || a.starts_with("-Wp,-MMD")) continue;
    if (a == "-ffunction-sections" || a == "-fdata-sections") continue;
    if (linker_only(a)) continue;
    if (takes_value(a) && i + 1 < c.argv.size()) {
      out.push_back(a);
      out.push_back(c.argv[++i]);
      continue;
    }
    if (!a.starts_with("-") && (is_linker_input(a) || (is_source_file(a) && abs_in(c.directory, a) != c.file))) continue;
    out.push_back(a);
  }
  for (const char* a : {"-ffunction-sections", "-fdata-sections", "-o"}) out.push_back(a);
  out.push_back(object.string());
  return out;
}

std::string object_command(const CompileCommand& c, const fs::path& object) {
  std::string cmd = "cd " + shell_quote(c.directory) + " &&";
  for (const std::string& a : object_argv(c, object)) cmd += " " + shell_quote(a);
  return cmd;
}

void rebase(CompileCommand& c, const std::string& from, const std::string& to) {
  auto fix = [&](std::string& s) {
    // Also inside an option (-I/abs/dir, -iquote=/abs/dir): the first occurrence at a path boundary.
    size_t at = s.find(from);
    if (at == std::string::npos) return;
    size_t end = at + from.size();
    if (end < s.size() && s[end] != '/') return;
    s = s.substr(0, at) + to + s.substr(end);
  };
  fix(c.directory);
  fix(c.file);
  fix(c.output);
  for (std::string& a : c.argv) fix(a);
}

}  // namespace lg::builder
