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
#include "elf/elf_file.h"

namespace lg {

struct LoadedObject {
  std::string path;       // as /proc/PID/maps names it
  std::string open_path;  // where we open it: /proc/PID/root/<path>
  RemoteRange range;      // from the lowest to the highest of its mappings
  uint64_t first_offset = 0;
  uint64_t inode = 0;
  std::shared_ptr<ElfFile> elf;  // opened on first use
  uint64_t bias = 0;             // runtime address = bias + ELF vaddr (valid once elf is open)

  RemoteAddr runtime(uint64_t vaddr) const { return RemoteAddr(bias + vaddr); }
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

  // A defined symbol of [object] (its .symtab, locals included, then .dynsym), by name. An
  // ambiguous local name is an error unless exactly one definition is global.
  Result<std::optional<ResolvedSymbol>> lookup_in(LoadedObject& object, std::string_view name);
  // A global or weak defined dynamic symbol of any mapped object, in mapping order.
  Result<std::optional<ResolvedSymbol>> lookup_global(std::string_view name);

  std::vector<LoadedObject>& objects() { return objects_; }

 private:
  pid_t pid_ = 0;
  std::string exe_path_;
  std::vector<Mapping> maps_;
  std::vector<LoadedObject> objects_;
};

}  // namespace lg
