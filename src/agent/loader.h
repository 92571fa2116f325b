// The agent's loader for patch objects (ET_REL, x86-64): places every allocated section within
// +-2 GiB of the target object, resolves symbols, relocates, protects pages, registers the
// unwind information with the host's unwinder and runs constructors. A failed load leaves
// nothing mapped; a LoadedObject that is destroyed runs its destructors, deregisters its unwind
// information and unmaps itself.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "agent/address_space.h"
#include "common/remote.h"
#include "common/result.h"
#include "x86/data_reference.h"
#include "x86/entry_thunk.h"

namespace lg::agent {

struct LoadOptions {
  std::string path;           // the patch object file (opened when fd < 0; else only a label)
  RemoteRange target;         // the whole target object: everything is placed near it
  std::map<std::string, uint64_t, std::less<>> symbols;  // resolved by the controller
  std::set<std::string, std::less<>> dlsym_names;        // may be looked up with dlsym(RTLD_DEFAULT)
  std::vector<x86::DataRef> data_refs;  // rewritten when out of reach (src/x86/data_reference.h)
  // Registers to preserve around replacement i (src/x86/entry_thunk.h); none: no entry thunk.
  std::vector<x86::ThunkRegs> entry_thunks;
  int fd = -1;  // the patch file as the controller validated it (not owned); -1: open [path]
};

struct LoadedRegion {
  std::string name;  // a section name, or "[veneers]", "[got]", "[common]"
  uint64_t addr = 0;
  uint64_t size = 0;
  int prot = 0;  // PROT_* of the page group it lives in
};

struct DefinedSymbol {
  std::string name;
  uint64_t addr = 0;
  uint64_t size = 0;
  unsigned char type = 0;  // STT_*
  unsigned char bind = 0;  // STB_*
};

class LoadedObject {
 public:
  LoadedObject(const LoadedObject&) = delete;
  LoadedObject& operator=(const LoadedObject&) = delete;
  // Runs destructors (when constructors ran), deregisters unwind info, unmaps.
  ~LoadedObject();

  const std::string& path() const { return path_; }
  uint64_t base() const { return mem_.addr(); }
  uint64_t size() const { return mem_.size(); }
  bool contains(uint64_t addr, uint64_t len) const { return addr >= base() && len <= size() && addr - base() <= size() - len; }
  const std::vector<LoadedRegion>& regions() const { return regions_; }
  // The executable page group (patch text and veneers).
  std::vector<RemoteRange> code_ranges() const;
  // The loaded .eh_frame (without the terminator we add), if any, and whether it is
  // registered with the host's unwinder (false in hosts without libgcc_s).
  std::optional<RemoteRange> eh_frame() const { return eh_frame_; }
  bool eh_frame_registered() const { return eh_registered_ != nullptr; }
  // Run-time address of the first allocated section named [name].
  std::optional<RemoteRange> section(std::string_view name) const;
  // A symbol defined in the patch (globals win over locals of the same name).
  std::optional<DefinedSymbol> find_symbol(std::string_view name) const;
  // The function symbol that starts at [addr], if any.
  std::optional<DefinedSymbol> function_at(uint64_t addr) const;

  // Runs .init_array (and .ctors) once. Patch code runs here: call it only after every check.
  void run_constructors();

  // The entry thunk made for LoadOptions::entry_thunks[i] (0 when none), and pointing it at
  // the replacement it calls (before anything can reach the thunk).
  uint64_t entry_thunk(size_t i) const { return i < thunks_.size() ? thunks_[i].addr : 0; }
  void set_entry_thunk_target(size_t i, uint64_t target);

 private:
  friend class ObjectLoader;
  LoadedObject() = default;
  void run_destructors();

  std::string path_;
  Reservation mem_;
  uint64_t code_lo_ = 0, code_hi_ = 0;
  std::vector<LoadedRegion> regions_;
  std::vector<DefinedSymbol> symbols_;
  std::optional<RemoteRange> eh_frame_;
  void (*eh_registered_)(void*) = nullptr;  // the host's __deregister_frame, when registered
  std::vector<uint64_t> init_, fini_;  // function pointers, in call order
  bool constructors_ran_ = false;
  struct Thunk {
    uint64_t addr = 0, slot = 0;
  };
  std::vector<Thunk> thunks_;
};

// Loads [opts.path]. Errors: not_found (file, unresolved symbol), bad_patch (malformed ELF),
// unsupported (TLS, IFUNC, unknown relocation, relocation overflow, no room near the target),
// io. The returned object's constructors have not run yet.
Result<std::unique_ptr<LoadedObject>> load_object(const LoadOptions& opts);

// Everything load_object() checks and plans before it maps memory, on the bytes of a file:
// parsing (src/elf/rel_object.h), elf::check_loadable(), the layout and the relocation scan.
// For the fuzzer and tests; errors as load_object().
Result<void> plan_load(std::span<const uint8_t> bytes, const std::string& label);

}  // namespace lg::agent
