// Relocating the instructions a 5-byte entry jump displaces (Zydis), for the per-thread model's
// original continuation (x86/continuation.h).
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "common/result.h"
#include "x86/continuation.h"

namespace lg::x86 {

// [code] are the bytes at [jump_addr] (at least the displaced instructions; 32 bytes is plenty).
// Copies every instruction that starts in [jump_addr, jump_addr + 5) into a template:
//  - instructions without relative operands verbatim;
//  - RIP-relative memory operands get a fixup to the same absolute address;
//  - jmp/jcc rel8 and rel32 become their rel32 forms, call rel32 stays call rel32 (the return
//    address is then inside the continuation, which goes on with the next relocated
//    instruction), each with a fixup;
// then appends `jmp rel32` back to jump_addr + displaced.
// Refuses (kind `unsupported`, naming [name] and the instruction) what cannot be relocated:
// loop/jrcxz (no rel32 form), other relative operands, and bytes that do not decode.
Result<ContinuationTemplate> relocate_prologue(std::span<const uint8_t> code, uint64_t jump_addr, const std::string& name);

}  // namespace lg::x86
