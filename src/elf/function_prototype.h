// How a function receives its arguments, from its DWARF prototype (SysV x86-64 psABI §3.2.3):
// whether everything arrives in registers, which an entry thunk that pushes onto the stack
// before calling the function must be sure of (src/x86/entry_thunk.h).
#pragma once

#include <cstdint>
#include <string>

#include "elf/elf_file.h"

namespace lg {

struct ArgumentPassing {
  bool registers_only = false;  // every argument in rdi..r9 / xmm0..7, not variadic
  std::string why;              // when not: "variadic", "argument 7 is on the stack", "no DWARF"...
  bool returns_in_rdx = false;  // the return value may use rdx (a 16-byte integer or aggregate)
  bool returns_in_xmm = false;  // the return value may use xmm0/xmm1
};

// The prototype of the function whose entry is [vaddr] in [elf] (the object or its debug file).
// Unknown (no DWARF, no subprogram at that address, a type it cannot classify) is never
// registers_only: only a proven prototype is.
ArgumentPassing argument_passing(const ElfFile& elf, uint64_t vaddr);

}  // namespace lg
