// Writing code of this process while its other threads run: the kernel's text_poke_bp protocol
// (arch/x86/kernel/alternative.c) in user space.
//
//  1. int3 on the first byte of the instruction being replaced; sync every core;
//  2. the tail bytes; sync;
//  3. the first byte of the new instruction; sync.
// "sync" is membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE) (registered first): every
// thread of the process executes a core-serializing instruction before it returns, so no core
// keeps executing stale bytes. A thread that reaches the int3 in between gets a SIGTRAP; our
// handler sends it where the site says (the function's stub) — or, once the write is complete,
// back to the site to execute the new instruction. SIGTRAPs that are not ours go to the handler
// that was installed before (or get the default action). Trap sites are never forgotten: a
// thread that executed the int3 may run the handler after the write finished.
//
// A thread that was *inside* the bytes being replaced (past the first byte, at an instruction
// boundary of the displaced ones) would execute a torn instruction after step 2: the caller must
// make sure no thread is there between steps 1 and 2 (the controller checks it thread by thread).
#pragma once

#include <cstdint>
#include <span>

#include "common/result.h"

namespace lg::agent {

// Writes [bytes] at [addr] through /proc/self/mem (which writes read-only or executable pages
// without changing their protection, as ptrace does). Not atomic: only for bytes no thread can
// execute or for a single byte.
Result<void> write_code(uint64_t addr, std::span<const uint8_t> bytes);

// Serializes every core running a thread of this process. Registers the process for it first.
// Fails (kind `unsupported`) when the kernel lacks MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE.
Result<void> sync_cores();

// Step 1: [addr] must hold [expected_first]; puts int3 there; a thread that traps on it goes to
// [redirect]. Installs the SIGTRAP handler on first use (and again if the host replaced it).
Result<void> poke_begin(uint64_t addr, uint8_t expected_first, uint64_t redirect);
// Steps 2 and 3: writes [bytes] (tail first, then the first byte) over the int3 site at [addr].
Result<void> poke_finish(uint64_t addr, std::span<const uint8_t> bytes);
// Undoes step 1: the first byte becomes [orig_first] again, then sync.
Result<void> poke_undo(uint64_t addr, uint8_t orig_first);
// The whole protocol for an instruction whose interior no thread can be in (replacing one
// whole instruction, e.g. our 5-byte jmp by the original bytes): verify [old], then 1-3.
Result<void> text_poke(uint64_t addr, std::span<const uint8_t> old_bytes, std::span<const uint8_t> new_bytes, uint64_t redirect);

// For tests: how many SIGTRAPs our handler redirected.
uint64_t trap_redirects();

}  // namespace lg::agent
