// ProcessImage: the ELF objects mapped in a process (the executable and its libraries), read
// from /proc/PID/maps and opened (lazily) from disk through /proc/PID/root. No ptrace needed.
#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/proc_maps.h"
#include "common/remote.h"
#include "common/result.h"
#include "elf/debug_file.h"
#include "elf/elf_file.h"

namespace lg {

struct LoadedObject {
  std::string path;       // as /proc/PID/maps names it, without " (deleted)"
  std::string open_path;  // where we open it: /proc/PID/root/<path>, or /proc/PID/map_files/<range>
  std::string map_files;  // /proc/PID/map_files/<lo>-<hi> of one of its mappings: the mapped file itself
  bool deleted = false;   // the file was deleted or replaced on disk after it was mapped
  RemoteRange range;      // from the lowest to the highest of its mappings
  uint64_t first_offset = 0;
  uint64_t inode = 0;
  std::shared_ptr<ElfFile> elf;  // opened on first use
  uint64_t bias = 0;             // runtime address = bias + ELF vaddr (valid once elf is open)
  // Its separate debug file (src/elf/debug_file.h) when the object has no .symtab and one was
  // found: symbols and DWARF come from there, code always from [elf] or memory.
  std::shared_ptr<ElfFile> debug;
  std::string debug_path, debug_origin;
  bool debug_searched = false;
  std::vector<std::string> debug_tried;  // where it looked, for messages

  RemoteAddr runtime(uint64_t vaddr) const { return RemoteAddr(bias + vaddr); }
  // The file whose .symtab and DWARF describe the object (valid once elf is open).
  const ElfFile& symbol_file() const { return debug ? *debug : *elf; }
  // "path" or "path (deleted)", for messages and status.
  std::string display_path() const { return deleted ? path + " (deleted)" : path; }
};

// A symbol resolved to a runtime address, with where it came from.
struct ResolvedSymbol {
  RemoteAddr addr;
  bool ifunc = false;       // an IFUNC: must be resolved in-process (dlsym)
  std::string object;       // path of the defining object
};

class ProcessImage {
 public:
  static Result<ProcessImage> read(pid_t pid);

  pid_t pid() const { return pid_; }
  const std::vector<Mapping>& maps() const { return maps_; }

  // The main executable (the object /proc/PID/exe names).
  Result<LoadedObject*> main_executable();
  // An object by soname, file name or absolute path. not_found lists what is mapped.
  Result<LoadedObject*> find(std::string_view name);
  // Opens the object's ELF file (once) and computes its bias.
  Result<void> open(LoadedObject& object);
  // open(), then, when the object has no .symtab, looks for its separate debug file (once).
  // Not finding one is no error: symbol_file() is then the object itself.
  Result<void> open_symbols(LoadedObject& object);
  // How open_symbols() looks for debug files (default: default_debug_roots() of the target).
  void set_debug_options(DebugFileOptions options) { debug_options_ = std::move(options); }

  // A defined symbol of [object] (its .symtab or its debug file's, locals included, then .dynsym), by name. An
  // ambiguous local name is an error unless exactly one definition is global.
  Result<std::optional<ResolvedSymbol>> lookup_in(LoadedObject& object, std::string_view name);
  // A global or weak defined dynamic symbol of any mapped object, in mapping order.
  Result<std::optional<ResolvedSymbol>> lookup_global(std::string_view name);

  std::vector<LoadedObject>& objects() { return objects_; }
  // The object one of whose mappings contains [addr], nullptr when none does.
  const LoadedObject* object_containing(RemoteAddr addr) const;

 private:
  pid_t pid_ = 0;
  std::string exe_path_;
  std::vector<Mapping> maps_;
  std::vector<LoadedObject> objects_;
  DebugFileOptions debug_options_;
};

}  // namespace lg
