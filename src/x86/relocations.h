// The x86-64 relocation types of patch objects: the one list that both the controller (which
// refuses a patch before touching a process) and the agent's loader (which applies them) use.
// Header-only and dependency-free, so the libc-only agent shares it.
#pragma once

#include <elf.h>

#include <cstdint>
#include <iterator>

#ifndef R_X86_64_GOTPCRELX
#define R_X86_64_GOTPCRELX 41
#endif
#ifndef R_X86_64_REX_GOTPCRELX
#define R_X86_64_REX_GOTPCRELX 42
#endif

namespace lg::x86 {

enum class RelocClass {
  supported,
  tls,      // thread-local storage: refused (a patch cannot add TLS to a running process)
  unknown,  // anything else the loader does not implement
};

inline RelocClass classify_relocation(uint32_t type) {
  switch (type) {
    case R_X86_64_NONE:
    case R_X86_64_64:
    case R_X86_64_PC32:
    case R_X86_64_PLT32:
    case R_X86_64_32:
    case R_X86_64_32S:
    case R_X86_64_GOTPCREL:
    case R_X86_64_GOTPCRELX:
    case R_X86_64_REX_GOTPCRELX:
    case R_X86_64_PC64:
    case R_X86_64_GOTPC32:
    case R_X86_64_GOTPC64:
    case R_X86_64_GOTOFF64:
      return RelocClass::supported;
    case R_X86_64_DTPMOD64:
    case R_X86_64_DTPOFF64:
    case R_X86_64_TPOFF64:
    case R_X86_64_TLSGD:
    case R_X86_64_TLSLD:
    case R_X86_64_DTPOFF32:
    case R_X86_64_GOTTPOFF:
    case R_X86_64_TPOFF32:
    case R_X86_64_GOTPC32_TLSDESC:
    case R_X86_64_TLSDESC_CALL:
    case R_X86_64_TLSDESC:
      return RelocClass::tls;
    default:
      return RelocClass::unknown;
  }
}

// Bytes a relocation of this type writes at r_offset (0 for R_X86_64_NONE): what the loader
// bounds-checks and what the metadata reader uses to tell a field is covered.
inline uint64_t relocation_width(uint32_t type) {
  switch (type) {
    case R_X86_64_NONE: return 0;
    case R_X86_64_64:
    case R_X86_64_PC64:
    case R_X86_64_GOTOFF64:
    case R_X86_64_GOTPC64:
    case R_X86_64_GOT64:
    case R_X86_64_GOTPCREL64:
    case R_X86_64_GOTPLT64:
    case R_X86_64_PLTOFF64:
    case R_X86_64_SIZE64:
    case R_X86_64_DTPMOD64:
    case R_X86_64_DTPOFF64:
    case R_X86_64_TPOFF64:
    case R_X86_64_RELATIVE64:
    case R_X86_64_TLSDESC:
      return 8;
    case R_X86_64_16:
    case R_X86_64_PC16: return 2;
    case R_X86_64_8:
    case R_X86_64_PC8: return 1;
    case R_X86_64_TLSDESC_CALL: return 0;
    default: return 4;
  }
}

// "R_X86_64_PC32"; "R_X86_64_<unknown>" past the table.
inline const char* relocation_name(uint32_t type) {
  static constexpr const char* names[] = {
      "R_X86_64_NONE",       "R_X86_64_64",         "R_X86_64_PC32",           "R_X86_64_GOT32",
      "R_X86_64_PLT32",      "R_X86_64_COPY",       "R_X86_64_GLOB_DAT",       "R_X86_64_JUMP_SLOT",
      "R_X86_64_RELATIVE",   "R_X86_64_GOTPCREL",   "R_X86_64_32",             "R_X86_64_32S",
      "R_X86_64_16",         "R_X86_64_PC16",       "R_X86_64_8",              "R_X86_64_PC8",
      "R_X86_64_DTPMOD64",   "R_X86_64_DTPOFF64",   "R_X86_64_TPOFF64",        "R_X86_64_TLSGD",
      "R_X86_64_TLSLD",      "R_X86_64_DTPOFF32",   "R_X86_64_GOTTPOFF",       "R_X86_64_TPOFF32",
      "R_X86_64_PC64",       "R_X86_64_GOTOFF64",   "R_X86_64_GOTPC32",        "R_X86_64_GOT64",
      "R_X86_64_GOTPCREL64", "R_X86_64_GOTPC64",    "R_X86_64_GOTPLT64",       "R_X86_64_PLTOFF64",
      "R_X86_64_SIZE32",     "R_X86_64_SIZE64",     "R_X86_64_GOTPC32_TLSDESC", "R_X86_64_TLSDESC_CALL",
      "R_X86_64_TLSDESC",    "R_X86_64_IRELATIVE",  "R_X86_64_RELATIVE64",     "R_X86_64_39",
      "R_X86_64_40",         "R_X86_64_GOTPCRELX",  "R_X86_64_REX_GOTPCRELX",
  };
  return type < std::size(names) ? names[type] : "R_X86_64_<unknown>";
}

}  // namespace lg::x86
