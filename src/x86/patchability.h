// Whether a function can be redirected with a 5-byte jmp rel32 at its entry (after endbr64),
// decided by decoding the whole function with Zydis.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "common/result.h"

namespace lg::x86 {

struct PatchSite {
  uint64_t func_addr = 0;   // address the bytes were given at
  uint64_t jump_addr = 0;   // func_addr, or func_addr + 4 after endbr64
  size_t displaced = 0;     // bytes of whole instructions covered by the jump (>= 5)
};

// Decodes [code] (the whole function, st_size bytes) as if located at [func_addr]. Refuses
// (ErrorKind::unsupported, message naming [name] and the offending offset/instruction):
//  - a function shorter than the jump (endbr64 + 5 bytes);
//  - bytes that do not decode;
//  - any branch (jmp/jcc/call/loop/jrcxz) inside the function whose target lies in
//    (jump_addr, jump_addr + 5) — it would land in the middle of the jump;
//  - the function's own entry being in the middle of a displaced instruction is impossible
//    by construction; displaced instructions are counted whole.
Result<PatchSite> check_patchable(std::span<const uint8_t> code, uint64_t func_addr, const std::string& name);

// One-line disassembly of the instruction at [code] (for diagnostics and tests).
std::string disassemble_one(std::span<const uint8_t> code, uint64_t addr);

}  // namespace lg::x86
