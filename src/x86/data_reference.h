// External data reached PC-relatively from -fPIE patch code, and how the loader rewrites it.
//
// 1. -fPIE code reads a global it does not define (`stderr`, a library's errno-style variable,
//    a typeinfo `_ZTISt12out_of_range`) with `mov sym(%rip), %reg` or `lea sym(%rip), %reg`
//    and an R_X86_64_PC32 relocation: GCC counts on the linker to make a copy relocation, so
//    that the variable lives in the executable. A patch is linked by nobody: when the running
//    executable has no copy of that variable, it lives in a library more than 2 GiB away and
//    the 32-bit displacement cannot reach it.
// 2. The loader then reaches it through a GOT slot of its own that holds the variable's address:
//      lea sym+A(%rip), %r64   (A = -4)  ->  mov slot(%rip), %r64          (in place, same length)
//      lea sym+A(%rip), %r64   (other A) ->  jmp thunk: mov slot(%rip), %r64; lea A+4(%r64), %r64; jmp back
//      mov sym+A(%rip), %r32/64          ->  jmp thunk: mov slot(%rip), %r64; mov A+4(%r64), %r; jmp back
//      any other insn with sym(%rip)     ->  jmp thunk: lea -128(%rsp), %rsp; push %s;
//                                            mov slot(%rip), %s; insn with disp(%s) instead;
//                                            pop %s; lea 128(%rsp), %rsp; jmp back
//    where %s is a register the instruction does not use, saved below the red zone. The jump
//    replaces the instruction's first 5 bytes and int3 fills the rest; no thunk instruction
//    but the original one changes flags, and only the original one's registers change.
// 3. Instructions that use the stack pointer or branch (push, call *sym(%rip), ...) are refused
//    by the controller before the process is touched; `-fPIC` or `-mno-direct-extern-access`
//    (GCC 12) patches need none of it.
// The controller decodes (Zydis, classify_data_reference) and sends the instructions in the load
// request; the agent rewrites only those whose displacement does not fit. This header is
// dependency-free: the libc-only agent includes it.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace lg::x86 {

enum class DataRefKind : uint8_t { lea, load, generic };

inline const char* to_string(DataRefKind k) {
  return k == DataRefKind::lea ? "lea" : k == DataRefKind::load ? "load" : "generic";
}
inline std::optional<DataRefKind> data_ref_kind_from_string(std::string_view s) {
  if (s == "lea") return DataRefKind::lea;
  if (s == "load") return DataRefKind::load;
  if (s == "generic") return DataRefKind::generic;
  return std::nullopt;
}

// One rewritable instruction of a patch: the R_X86_64_PC32 field at [offset] of section
// [section] belongs to the instruction [insn, insn + len).
struct DataRef {
  uint32_t section = 0;
  uint64_t offset = 0;
  uint64_t insn = 0;
  uint8_t len = 0;
  DataRefKind kind = DataRefKind::load;
  // generic: the instruction re-encoded with its memory operand as disp32(%scratch), and the
  // scratch register (0..15, encoding order) it does not use.
  std::vector<uint8_t> body;
  uint8_t scratch = 0;
};

inline constexpr size_t kDataRefThunkSize = 48;

// The rewrite of one instruction, given its bytes at run-time address [insn_addr], the
// relocation's addend, the slot holding the symbol's address and a thunk area (kDataRefThunkSize
// bytes at [thunk_addr]). Writes into [insn] (the instruction, len bytes) and [thunk]. Returns
// false when the bytes are not what the controller decoded or something is out of reach.
inline bool rewrite_generic_data_ref(uint8_t* insn, size_t len, uint64_t insn_addr, const DataRef& ref, uint64_t slot,
                                     uint8_t* thunk, uint64_t thunk_addr) {
  auto rel32 = [](uint64_t from_end, uint64_t to, int32_t& out) {
    int64_t d = static_cast<int64_t>(to - from_end);
    if (d < INT32_MIN || d > INT32_MAX) return false;
    out = static_cast<int32_t>(d);
    return true;
  };
  unsigned s = ref.scratch;
  if (len < 5 || len > 15 || s > 15 || s == 4 || ref.body.empty() || ref.body.size() > 15) return false;
  uint8_t t[kDataRefThunkSize];
  size_t n = 0;
  int32_t d;
  const uint8_t below_red_zone[] = {0x48, 0x8d, 0x64, 0x24, 0x80};  // lea -0x80(%rsp), %rsp
  std::memcpy(t + n, below_red_zone, sizeof below_red_zone);
  n += sizeof below_red_zone;
  if (s & 8) t[n++] = 0x41;
  t[n++] = static_cast<uint8_t>(0x50 | (s & 7));               // push %s
  t[n++] = static_cast<uint8_t>(0x48 | ((s & 8) ? 0x04 : 0));  // mov slot(%rip), %s
  t[n++] = 0x8b;
  t[n++] = static_cast<uint8_t>(((s & 7) << 3) | 5);
  if (!rel32(thunk_addr + n + 4, slot, d)) return false;
  std::memcpy(t + n, &d, 4);
  n += 4;
  std::memcpy(t + n, ref.body.data(), ref.body.size());
  n += ref.body.size();
  if (s & 8) t[n++] = 0x41;
  t[n++] = static_cast<uint8_t>(0x58 | (s & 7));                               // pop %s
  const uint8_t back_up[] = {0x48, 0x8d, 0xa4, 0x24, 0x80, 0x00, 0x00, 0x00};  // lea 0x80(%rsp), %rsp
  std::memcpy(t + n, back_up, sizeof back_up);
  n += sizeof back_up;
  t[n++] = 0xe9;
  if (!rel32(thunk_addr + n + 4, insn_addr + len, d)) return false;
  std::memcpy(t + n, &d, 4);
  n += 4;
  while (n < kDataRefThunkSize) t[n++] = 0xcc;
  uint8_t j[15];
  j[0] = 0xe9;
  if (!rel32(insn_addr + 5, thunk_addr, d)) return false;
  std::memcpy(j + 1, &d, 4);
  for (size_t i = 5; i < len; ++i) j[i] = 0xcc;
  std::memcpy(thunk, t, kDataRefThunkSize);
  std::memcpy(insn, j, len);
  return true;
}

inline bool rewrite_data_ref(uint8_t* insn, size_t len, uint64_t insn_addr, DataRefKind kind, int64_t addend,
                             uint64_t slot, uint8_t* thunk, uint64_t thunk_addr, bool& used_thunk) {
  used_thunk = false;
  if (kind == DataRefKind::generic) return false;  // rewrite_generic_data_ref
  if (len < 6 || len > 15) return false;
  // [REX] opcode modrm(00 reg 101) disp32: the disp32 is the last 4 bytes.
  size_t op_at = len - 6;
  uint8_t rex = 0;
  if (op_at == 1) {
    rex = insn[0];
    if ((rex & 0xf0) != 0x40) return false;
  } else if (op_at != 0) {
    return false;
  }
  uint8_t opcode = insn[op_at], modrm = insn[op_at + 1];
  if ((modrm & 0xc7) != 0x05) return false;
  if (opcode != (kind == DataRefKind::lea ? 0x8d : 0x8b)) return false;
  bool wide = rex & 0x08;
  unsigned reg = ((modrm >> 3) & 7) | ((rex & 0x04) ? 8 : 0);
  if (reg == 4 || (kind == DataRefKind::lea && !wide)) return false;  // rsp; a 32-bit lea

  auto rel32 = [](uint64_t from_end, uint64_t to, int32_t& out) {
    int64_t d = static_cast<int64_t>(to - from_end);
    if (d < INT32_MIN || d > INT32_MAX) return false;
    out = static_cast<int32_t>(d);
    return true;
  };
  if (kind == DataRefKind::lea && addend == -4) {
    int32_t d;
    if (!rel32(insn_addr + len, slot, d)) return false;
    insn[op_at] = 0x8b;
    std::memcpy(insn + op_at + 2, &d, 4);
    return true;
  }
  int64_t disp = addend + 4;  // the effective address was sym + A + 4 (the field ends the insn)
  if (disp < INT32_MIN || disp > INT32_MAX) return false;
  uint8_t t[kDataRefThunkSize];
  size_t n = 0;
  int32_t d;
  // mov slot(%rip), %r64
  t[n++] = static_cast<uint8_t>(0x48 | ((reg & 8) ? 0x04 : 0));
  t[n++] = 0x8b;
  t[n++] = static_cast<uint8_t>(((reg & 7) << 3) | 5);
  if (!rel32(thunk_addr + n + 4, slot, d)) return false;
  std::memcpy(t + n, &d, 4);
  n += 4;
  // mov/lea disp32(%r64), %r  (mod 10; r12 needs a SIB byte)
  t[n++] = static_cast<uint8_t>(0x40 | (wide ? 0x08 : 0) | ((reg & 8) ? 0x05 : 0));
  t[n++] = kind == DataRefKind::lea ? 0x8d : 0x8b;
  t[n++] = static_cast<uint8_t>(0x80 | ((reg & 7) << 3) | (reg & 7));
  if ((reg & 7) == 4) t[n++] = 0x24;
  int32_t d32 = static_cast<int32_t>(disp);
  std::memcpy(t + n, &d32, 4);
  n += 4;
  // jmp back to the next instruction
  t[n++] = 0xe9;
  if (!rel32(thunk_addr + n + 4, insn_addr + len, d)) return false;
  std::memcpy(t + n, &d, 4);
  n += 4;
  while (n < kDataRefThunkSize) t[n++] = 0xcc;
  // The instruction becomes jmp thunk, int3...
  uint8_t j[15];
  j[0] = 0xe9;
  if (!rel32(insn_addr + 5, thunk_addr, d)) return false;
  std::memcpy(j + 1, &d, 4);
  for (size_t i = 5; i < len; ++i) j[i] = 0xcc;
  std::memcpy(thunk, t, kDataRefThunkSize);
  std::memcpy(insn, j, len);
  used_thunk = true;
  return true;
}

// Controller side (Zydis): the instruction of [section] (code at offset 0, with instructions
// starting at each of [starts]) that holds the R_X86_64_PC32 field at [field] with [addend],
// when it is one the loader can rewrite. Otherwise nullopt and [why] describes the instruction.
std::optional<DataRef> classify_data_reference(std::span<const uint8_t> section, const std::vector<uint64_t>& starts,
                                               uint64_t field, int64_t addend, std::string& why);

}  // namespace lg::x86
