// Separate debug files: where the symbols of a stripped executable or library live.
//
// Distributions ship stripped objects and put their .symtab and DWARF in a separate file
// (`objcopy --only-keep-debug`): /usr/lib/debug/.build-id/xx/yyyy.debug (-dbgsym packages), a
// file named by the object's .gnu_debuglink, or a debuginfod server. Such a file has the same
// section headers and addresses as the object, but every non-debug section is SHT_NOBITS: its
// symbols and DWARF are used with the code of the object itself (the file or the process's
// memory), never with the debug file's bytes.
//
// Lookup order (find_debug_file):
//   1. [options.explicit_file] when given (`livegraft apply --symbols FILE`): it must match
//      the object's build-id (or its .gnu_debuglink CRC when the object has no build-id);
//   2. <root>/.build-id/xx/yyyy.debug for every debug root;
//   3. .gnu_debuglink: <dir>/<name>, <dir>/.debug/<name>, <root>/<dir>/<name> (GDB's rules),
//      checked by build-id or, without one, by the link's CRC32;
//   4. debuginfod (elfutils' libdebuginfod client) when DEBUGINFOD_URLS is set.
// An object with its own .symtab needs none of this: callers ask only for objects without one.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "elf/elf_file.h"

namespace lg {

struct DebugFileOptions {
  // Debug roots (usually "/usr/lib/debug"), already prefixed with the target's root
  // (/proc/PID/root) where that applies. default_debug_roots() computes them.
  std::vector<std::string> roots;
  // Prefix for the object's own directory when following .gnu_debuglink ("/proc/PID/root").
  std::string sysroot;
  // `--symbols FILE`: tried first, an error when it does not belong to the object.
  std::string explicit_file;
  // Ask debuginfod when DEBUGINFOD_URLS is set (and livegraft was built with libdebuginfod).
  bool debuginfod = true;
};

// $LIVEGRAFT_DEBUG_ROOT (a colon-separated list, used as given: tests point it at a directory of
// their own) or else <sysroot>/usr/lib/debug.
std::vector<std::string> default_debug_roots(const std::string& sysroot);

struct DebugFile {
  std::shared_ptr<ElfFile> elf;
  std::string path;    // where it was found
  std::string origin;  // "build-id", ".gnu_debuglink", "--symbols", "debuginfod"
};

// Finds the debug file of [object] (whose path as the target sees it is [object_path]).
// nullopt when there is none; an error only for an explicit file that is unreadable or does not
// belong to the object. [tried] (optional) receives the places looked at, for messages.
Result<std::optional<DebugFile>> find_debug_file(const ElfFile& object, const std::string& object_path,
                                                 const DebugFileOptions& options,
                                                 std::vector<std::string>* tried = nullptr);

// Whether [debug] belongs to [object]: equal build-ids, or without a build-id the CRC32 that
// the object's .gnu_debuglink records.
bool debug_file_matches(const ElfFile& object, const ElfFile& debug);

// The .gnu_debuglink of [object]: file name and CRC32 of the debug file. nullopt when absent.
struct DebugLink {
  std::string name;
  uint32_t crc = 0;
};
std::optional<DebugLink> gnu_debuglink(const ElfFile& object);
// The CRC32 .gnu_debuglink uses (the zlib/IEEE polynomial) of a whole file.
Result<uint32_t> debuglink_crc_of_file(const std::string& path);

}  // namespace lg
