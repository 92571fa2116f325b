// Tolerating __LINE__-only changes. Adding or removing lines above a function shifts every
// __LINE__ in it: assert(), error-reporting macros and logging pass the line as an immediate
// argument, so the function's code differs although its behaviour does not. Like kpatch's
// kpatch_line_macro_change_only(), a function whose size and relocations are identical is
// treated as SAME when every differing instruction is
//   - a `mov $imm, %reg` into an argument register (rdi, rsi, rdx, rcx, r8, r9, 32 or 64 bit),
//     differing only in the immediate;
//   - followed, within 12 instructions, by a call to a function that takes a line number
//     (line_number_callee());
//   - and every such immediate moved by the same non-zero delta (lines inserted above the
//     function shift all its __LINE__ values equally; a real change of a constant rarely does).
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>

namespace lg::builder {

// callees: offset of a call instruction's rel32 field -> name of the called function.
bool differs_only_in_line_numbers(std::span<const uint8_t> orig, std::span<const uint8_t> patched,
                                  const std::map<uint64_t, std::string>& callees);

// Functions known to take __LINE__ (assert, printf-like reporting, err/warn, syslog, GLib's
// assertion helpers), plus any name containing "assert", "warn", "log", "error", "print",
// "panic", "fail", "die", "trace", "report" or "debug" (case-insensitive).
bool line_number_callee(const std::string& name);

}  // namespace lg::builder
