// The project's compile and link commands, as `livegraft build` learns them: from a
// compile_commands.json (CMake, Meson, bear) or recorded by compiler wrappers while the project's
// own build runs. One-step commands (`cc -O2 -g -o prog prog.c`, make's built-in rule) are both
// a compile of each source and a link.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"

namespace lg::builder {

struct CompileCommand {
  std::string directory;          // where it runs
  std::vector<std::string> argv;  // argv[0] the compiler
  std::string file;               // the source file, absolute
  std::string output;             // the object it writes, absolute ("" if unknown)
  bool one_step = false;          // compiles and links in one command (no -c)
};

struct LinkCommand {
  std::string directory;
  std::string output;                // absolute
  std::vector<std::string> inputs;   // objects, archives and sources it links, absolute
};

struct RecordedBuild {
  std::vector<CompileCommand> compiles;  // in the order they ran
  std::vector<LinkCommand> links;
};

// The files a unit's last compile read, from the dependency file it wrote (-MF FILE, or the
// object's name + ".d" as CMake and Meson name it; under Ninja, which deletes it, `ninja -t deps`),
// absolute; nullopt when there is none.
std::optional<std::vector<std::string>> unit_dependencies(const CompileCommand& c);

// Whether the compile makes an LTO object (-flto..., not undone by a later -fno-lto).
bool uses_lto(const CompileCommand& c);
// Why livegraft cannot patch what an LTO build made (one message for every place that sees it).
std::string lto_refusal(const std::string& what);

// Splits a shell command line into words (quotes and backslashes as sh does; no expansion).
std::vector<std::string> split_command(const std::string& s);
std::string shell_quote(const std::string& s);

// Parses one compiler invocation (cwd + argv) into compiles and a link (appended to `out`);
// invocations that neither compile nor link (-E, -M, --version, ...) add nothing.
void classify_invocation(const std::string& directory, const std::vector<std::string>& argv, RecordedBuild& out);

// compile_commands.json: entries with "arguments" or "command". Errors: not valid JSON.
Result<std::vector<CompileCommand>> read_compile_commands(const std::filesystem::path& json_path);

// The wrapper scripts: `bin/<name>` for every compiler name a build may call (cc, gcc, g++, clang,
// ..., and $CC/$CXX when they are one word), each recording its invocation into `record_dir` and
// running the real compiler. With LIVEGRAFT_RECORD_ONLY set in the environment, a compile or link
// only creates its output empty (other invocations still run).
struct Wrappers {
  std::string env;  // "PATH=... CC=... CXX=..." to prefix to the build command
  std::filesystem::path cc, cxx;
};
Wrappers install_wrappers(const std::filesystem::path& bin, const std::filesystem::path& record_dir);
RecordedBuild read_records(const std::filesystem::path& record_dir);

// The command that compiles `c` into `object` with the builder's flags
// (-ffunction-sections -fdata-sections): the project's own flags, -c added, the output,
// dependency-file and linker-only arguments dropped. A shell command line (with `cd DIR &&`).
std::string object_command(const CompileCommand& c, const std::filesystem::path& object);
// The same compile as argv (run in c.directory): "-c" second, "-o OBJECT" last.
std::vector<std::string> object_argv(const CompileCommand& c, const std::filesystem::path& object);

// Replaces the path prefix `from` by `to` in every field of `c` (a path-boundary match).
void rebase(CompileCommand& c, const std::string& from, const std::string& to);

bool is_source_file(const std::string& name);

}  // namespace lg::builder
