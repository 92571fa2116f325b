// Applying one x86-64 ELF relocation to loaded bytes, with overflow checks (psABI §4.4).
#pragma once

#include <cstdint>

#include "common/result.h"
#include "x86/relocations.h"

namespace lg::agent {

// What a relocation needs, all as final run-time addresses.
struct RelocInputs {
  uint32_t type = 0;
  uint8_t* place = nullptr;  // where to write (the loader's writable view of P)
  uint64_t P = 0;            // run-time address of the place
  uint64_t S = 0;            // symbol value
  int64_t A = 0;             // addend
  uint64_t G = 0;            // run-time address of the symbol's GOT slot (GOTPCREL*)
  uint64_t GOT = 0;          // run-time address of the GOT area (GOTPC*, GOTOFF64)
};

using x86::classify_relocation;  // src/x86/relocations.h: the list the controller checks too
using x86::RelocClass;
using x86::relocation_name;
// Whether the relocation refers to the symbol through a GOT slot.
bool uses_got_slot(uint32_t type);
// Writes the relocated value; fails with kind `unsupported` when the value does not fit the
// field (the message says by how much) or the type is not supported. The caller adds context
// (symbol, section, offset).
Result<void> apply_relocation(const RelocInputs& in);

}  // namespace lg::agent
