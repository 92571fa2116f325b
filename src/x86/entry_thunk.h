// Entry thunks: make a replacement keep the register contract of the function it replaces.
//
// GCC's -fipa-ra lets callers in the original's unit keep values in call-clobbered registers
// the original never touches (docs/architecture.md, decision 7). When the controller cannot
// prove that no caller relies on registers the replacement changes, the function's slot points
// at an entry thunk instead of the replacement:
//
//     push  each preserved general register      (CFI: CFA offset, register saved)
//     sub   $frame, %rsp                          (16-byte alignment for the call + xmm saves)
//     movdqu each preserved xmm, k(%rsp)
//     call  *target(%rip)                         (the replacement; its address in a data slot)
//     movdqu k(%rsp), each preserved xmm
//     add   $frame, %rsp ; pop ... ; ret
//
// The thunk moves the stack pointer before the replacement runs, so it is only used for
// functions that take every argument in registers (src/elf/function_prototype.h); the
// controller refuses the others. It lives in the patch's code (so stack checks count it as patch
// code) and has an FDE in the patch's registered .eh_frame (appended after the patch's own FDEs,
// one zero terminator after both, registered with __register_frame by the agent's loader), so
// C++ exceptions thrown by the replacement unwind through it into the caller's handler
// (tests/e2e/entry_thunk_exception_test.cpp; without the FDE the unwinder finds no frame for
// the thunk's return address and the exception ends in std::terminate). The FDE has no
// personality: the thunk catches nothing. On the exception path the thunk's saves are not
// restored, which is what callers expect: GCC's register allocator treats an EH edge as
// clobbering every call-clobbered register (eh_edge_abi in GCC's function-abi.h; the unwinder
// restores only callee-saved ones), -fipa-ra or not.
//
// Vector registers: only the low 128 bits of xmm0-15 are kept (movdqu, legacy SSE encoding, which
// leaves bits 255:128 as the replacement left them). Exact when the callers are baseline x86-64
// code (Debian's default): they never hold a 256-bit value, so no upper half is live. Not exact
// when a caller built with AVX (-mavx, -march=x86-64-v3 or later) keeps a ymm value live across
// the call to a leaf original and the replacement, or what it calls (glibc's AVX2 string
// functions), writes that upper half: the caller sees a corrupted upper half. Not covered at all:
// xmm16-31 of AVX-512 code (-march=x86-64-v4): the register analysis (register_use.h) has no bits
// for them, so a caller keeping a value there is not even seen, and glibc's EVEX string
// functions use ymm16-31. Both need the analysis to track vector width and registers 16-31 and
// either a full-width save (XSAVE with the CPU's area size, which must leave the return value
// in xmm0/xmm1 alone) or a refusal; not done yet.
//
// Header-only and dependency-free: the libc-only agent builds thunks with it.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

namespace lg::x86 {

// Bit i (0..15): general registers in encoding order; 16 + i: xmm i (as in register_use.h).
using ThunkRegs = uint32_t;

struct EntryThunkCode {
  std::vector<uint8_t> code;
  std::vector<uint8_t> cfa_program;  // DW_CFA_* instructions of its FDE
  size_t call_disp_at = 0;           // offset of the call's disp32 (relative to the call's end)
};

namespace thunk_detail {

inline void uleb(std::vector<uint8_t>& out, uint64_t v) {
  do {
    uint8_t b = v & 0x7f;
    v >>= 7;
    out.push_back(static_cast<uint8_t>(b | (v ? 0x80 : 0)));
  } while (v);
}
inline void put32(std::vector<uint8_t>& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
inline void set32(std::vector<uint8_t>& out, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) out[at + static_cast<size_t>(i)] = static_cast<uint8_t>(v >> (8 * i));
}
// x86 encoding order -> DWARF register numbers (psABI figure 3.36).
inline uint8_t dwarf_reg(unsigned enc) {
  static const uint8_t map[16] = {0, 2, 1, 3, 7, 6, 4, 5, 8, 9, 10, 11, 12, 13, 14, 15};
  return map[enc & 15];
}

}  // namespace thunk_detail

// The thunk for [preserve] (rsp and rax are never preserved), before its call displacement is
// known (fill it with set_thunk_call_target). Its size does not depend on where it goes.
inline EntryThunkCode encode_entry_thunk(ThunkRegs preserve) {
  using namespace thunk_detail;
  EntryThunkCode t;
  auto& c = t.code;
  auto& p = t.cfa_program;
  std::vector<unsigned> gprs, xmms;
  for (unsigned r = 0; r < 16; ++r)
    if ((preserve & (1u << r)) && r != 0 && r != 4) gprs.push_back(r);
  for (unsigned x = 0; x < 16; ++x)
    if (preserve & (1u << (16 + x))) xmms.push_back(x);
  size_t last = 0;
  uint64_t cfa = 8;
  auto advance = [&] {
    size_t delta = c.size() - last;
    while (delta > 0x3f) {  // never for these instructions, but stay correct
      p.push_back(0x40 | 0x3f);
      delta -= 0x3f;
    }
    if (delta) p.push_back(static_cast<uint8_t>(0x40 | delta));
    last = c.size();
  };
  auto def_cfa_offset = [&] {
    p.push_back(0x0e);
    uleb(p, cfa);
  };
  for (unsigned r : gprs) {
    if (r & 8) c.push_back(0x41);
    c.push_back(static_cast<uint8_t>(0x50 | (r & 7)));
    cfa += 8;
    advance();
    def_cfa_offset();
    p.push_back(static_cast<uint8_t>(0x80 | dwarf_reg(r)));  // DW_CFA_offset: saved at CFA - cfa
    uleb(p, cfa / 8);
  }
  // rsp = CFA - cfa and the CFA is 16-aligned; before the call rsp must be too.
  uint32_t frame = static_cast<uint32_t>(16 * xmms.size() + ((cfa % 16) ? 8 : 0));  // CFA = 0 (mod 16)
  auto imm_rsp = [&](uint8_t modrm, uint32_t v) {
    c.push_back(0x48);
    c.push_back(0x81);
    c.push_back(modrm);
    put32(c, v);
  };
  if (frame) {
    imm_rsp(0xec, frame);  // sub $frame, %rsp
    cfa += frame;
    advance();
    def_cfa_offset();
  }
  auto movdqu = [&](uint8_t op, unsigned x, uint32_t disp) {
    c.push_back(0xf3);
    if (x & 8) c.push_back(0x44);
    c.push_back(0x0f);
    c.push_back(op);
    c.push_back(static_cast<uint8_t>(0x84 | ((x & 7) << 3)));  // disp32(%rsp) with a SIB
    c.push_back(0x24);
    put32(c, disp);
  };
  for (size_t j = 0; j < xmms.size(); ++j) movdqu(0x7f, xmms[j], static_cast<uint32_t>(16 * j));
  c.push_back(0xff);  // call *disp32(%rip)
  c.push_back(0x15);
  t.call_disp_at = c.size();
  put32(c, 0);
  for (size_t j = 0; j < xmms.size(); ++j) movdqu(0x6f, xmms[j], static_cast<uint32_t>(16 * j));
  if (frame) {
    imm_rsp(0xc4, frame);  // add $frame, %rsp
    cfa -= frame;
    advance();
    def_cfa_offset();
  }
  for (auto it = gprs.rbegin(); it != gprs.rend(); ++it) {
    if (*it & 8) c.push_back(0x41);
    c.push_back(static_cast<uint8_t>(0x58 | (*it & 7)));
    cfa -= 8;
    advance();
    def_cfa_offset();
    p.push_back(static_cast<uint8_t>(0xc0 | dwarf_reg(*it)));  // DW_CFA_restore
  }
  c.push_back(0xc3);
  return t;
}

// Points the thunk placed at [thunk_addr] at the 8-byte slot [slot]; false when out of reach.
inline bool set_thunk_call_target(EntryThunkCode& t, uint64_t thunk_addr, uint64_t slot) {
  int64_t d = static_cast<int64_t>(slot - (thunk_addr + t.call_disp_at + 4));
  if (d < INT32_MIN || d > INT32_MAX) return false;
  thunk_detail::set32(t.code, t.call_disp_at, static_cast<uint32_t>(static_cast<int32_t>(d)));
  return true;
}

// A .eh_frame fragment placed at run-time address [at]: one CIE (CFA = rsp + 8, return address
// at CFA - 8) and an FDE per thunk (address, size, program). No terminator: the caller adds
// the zero word __register_frame needs after the whole .eh_frame.
struct ThunkFde {
  uint64_t addr = 0, size = 0;
  const std::vector<uint8_t>* program = nullptr;
};
inline std::vector<uint8_t> encode_thunk_eh_frame(uint64_t at, const std::vector<ThunkFde>& fdes) {
  using namespace thunk_detail;
  std::vector<uint8_t> out;
  auto pad = [&](size_t start) {
    while ((out.size() - start) % 8) out.push_back(0);  // DW_CFA_nop
  };
  size_t cie = out.size();
  put32(out, 0);  // length, set below
  put32(out, 0);  // CIE id
  out.push_back(1);
  out.push_back('z');
  out.push_back('R');
  out.push_back(0);
  uleb(out, 1);        // code alignment
  out.push_back(0x78);  // data alignment -8 (sleb)
  out.push_back(16);    // return address column
  uleb(out, 1);         // augmentation data length
  out.push_back(0x1b);  // FDE addresses: DW_EH_PE_pcrel | DW_EH_PE_sdata4
  out.push_back(0x0c);  // DW_CFA_def_cfa rsp, 8
  out.push_back(7);
  out.push_back(8);
  out.push_back(0x90);  // DW_CFA_offset r16 (rip) at CFA - 8
  out.push_back(1);
  pad(cie);
  set32(out, cie, static_cast<uint32_t>(out.size() - cie - 4));
  for (const auto& f : fdes) {
    size_t fde = out.size();
    put32(out, 0);
    put32(out, static_cast<uint32_t>(out.size() - cie));  // CIE pointer: back to the CIE
    uint64_t field = at + out.size();
    put32(out, static_cast<uint32_t>(static_cast<int32_t>(static_cast<int64_t>(f.addr - field))));
    put32(out, static_cast<uint32_t>(f.size));
    uleb(out, 0);  // augmentation data length
    if (f.program) out.insert(out.end(), f.program->begin(), f.program->end());
    pad(fde);
    set32(out, fde, static_cast<uint32_t>(out.size() - fde - 4));
  }
  return out;
}

}  // namespace lg::x86
