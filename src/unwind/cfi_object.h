// CfiObject: one ELF image the unwinder knows code of — a mapped file, the vDSO, or an image
// synthesized around the .eh_frame of patch code the agent loaded — with its call frame
// information (.eh_frame, and .debug_frame when present) and its function symbols.
#pragma once

#include <elfutils/libdw.h>
#include <libelf.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/fd.h"
#include "common/result.h"

namespace lg {

struct FrameDeleter {
  void operator()(Dwarf_Frame* f) const { std::free(f); }
};
using FramePtr = std::unique_ptr<Dwarf_Frame, FrameDeleter>;

struct SymbolHit {
  std::string name;
  uint64_t offset = 0;  // from the symbol's start
};

class CfiObject {
 public:
  // Opens an ELF file ([path] may be a /proc/PID/map_files entry); [name] is for messages.
  static Result<std::unique_ptr<CfiObject>> open_file(const std::string& path, std::string name);
  // An ELF image in memory (the vDSO's bytes); the object keeps the bytes alive.
  static Result<std::unique_ptr<CfiObject>> from_image(std::vector<uint8_t> image, std::string name);
  // Code with no ELF file around it: builds a minimal ELF whose only content is [eh_frame] as a
  // .eh_frame section at address [eh_frame_addr], so libdw reads its pc-relative encodings at
  // their run-time addresses (load bias 0).
  static Result<std::unique_ptr<CfiObject>> from_eh_frame(std::span<const uint8_t> eh_frame, uint64_t eh_frame_addr,
                                                           std::string name);

  CfiObject(const CfiObject&) = delete;
  CfiObject& operator=(const CfiObject&) = delete;
  ~CfiObject();

  struct Symbol {
    uint64_t addr, size;
    std::string name;
  };

  const std::string& name() const { return name_; }
  bool has_cfi() const { return eh_cfi_ != nullptr || debug_cfi_ != nullptr; }

  // The load bias (run-time address minus link-time vaddr) of a mapping of this file that starts
  // at [lo] with file offset [offset]. Error when no PT_LOAD covers [offset].
  Result<uint64_t> bias_for(uint64_t lo, uint64_t offset) const;

  // The CFI row for link-time address [vaddr]: .eh_frame first, then .debug_frame.
  // nullptr with [why] filled when no FDE covers it.
  FramePtr frame_at(uint64_t vaddr, std::string* why) const;

  // The function symbol containing link-time address [vaddr], from .symtab/.dynsym or, for a
  // stripped object, from /usr/lib/debug/.build-id/xx/yyyy.debug. Loaded on first use.
  std::optional<SymbolHit> symbol_at(uint64_t vaddr);

  // The ELF section with this name: its link-time address and size.
  std::optional<std::pair<uint64_t, uint64_t>> section_range(const char* name) const;

 private:
  CfiObject() = default;
  Result<void> init();
  void load_symbols();

  struct Load {
    uint64_t offset, vaddr, filesz;
  };

  std::string name_;
  UniqueFd fd_;
  std::vector<uint8_t> image_;
  Elf* elf_ = nullptr;
  Dwarf_CFI* eh_cfi_ = nullptr;    // owned (dwarf_cfi_end)
  Dwarf* dwarf_ = nullptr;         // owned (dwarf_end); owns debug_cfi_
  Dwarf_CFI* debug_cfi_ = nullptr;
  std::vector<Load> loads_;
  bool symbols_loaded_ = false;
  std::vector<Symbol> symbols_;  // sorted by addr
};

}  // namespace lg
