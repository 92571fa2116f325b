// Entry thunks: make a replacement keep the register contract of the function it replaces.
//
// GCC's -fipa-ra lets callers in the original's unit keep values in call-clobbered registers
// the original never touches (docs/architecture.md, decision 7). When the controller cannot
// prove that no caller relies on registers the replacement changes, the function's slot points
// at an entry thunk instead of the replacement:
//
//     push  each preserved general register      (CFI: CFA offset, register saved)
//     sub   $frame, %rsp                          (16-byte alignment for the call + vector saves)
//     vmovdqu64 each preserved zmm, k(%rsp)       (EVEX; zmm0-31 whole)
//     vmovdqu   each preserved ymm, k(%rsp)       (VEX; ymm0-15 whole)
//     movdqu    each preserved xmm, k(%rsp)       (legacy SSE: the low 128 bits of xmm0-15)
//     kmovq/kmovw each preserved mask, k(%rsp)    (VEX)
//     call  *target(%rip)                         (the replacement; its address in a data slot)
//     the same moves back
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
// Vector state: the register analysis (register_use.h) tracks the low half of xmm0-15, the part
// of ymm/zmm0-15 above bit 127 (a caller built with -mavx or -march=x86-64-v3 keeps a ymm value
// live across a call to a leaf original; a VEX/EVEX write or VZEROUPPER in the replacement, or
// what it calls, such as glibc's AVX2 string functions, changes it), zmm16-31 and k0-7 of
// AVX-512 code. The controller turns what must be kept into save widths for this machine
// (register_use.h: thunk_regs, from XCR0 and CPUID; the thunk runs on the same CPUs): a low half
// alone with legacy movdqu (which leaves bits 128 and up as the replacement left them: right
// when the upper part needs no keeping, and free of VEX on a machine without AVX), an upper half
// by saving the whole register, ymm with VEX (AVX/AVX2 callers, which never read bits 511:256,
// even on an AVX-512 machine), zmm with EVEX (AVX-512 callers); zmm16-31 with EVEX and masks with kmovq (AVX512BW)
// or kmovw (only AVX-512F: 16-bit masks). State the machine lacks does not exist, so nothing is
// saved for it. A whole-register save also restores the low half where the original changes it:
// harmless (its callers take that as clobbered) except in a return register, so the controller
// refuses when the upper half of xmm0/xmm1 must be kept and the prototype returns in them.
// Vector registers need no CFI: they are caller-saved, no unwinder restores them;
// only the frame size changes the CFA offset. Not modelled: AMX tile state, x87/MMX.
//
// Header-only and dependency-free: the libc-only agent builds thunks with it.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

namespace lg::x86 {

// What a thunk saves. The agent gets it in the load request (docs/agent-protocol.md: "preserve"
// is [regs], "preserve_vec" is [vec]) and encodes exactly that; the controller decided it from
// the register analysis and this machine's features (register_use.h: thunk_regs).
//   regs bit i (0..15): general register i (encoding order); 16 + i: the low 128 bits of xmm i
//                       (legacy movdqu: bits 128 and up stay as the replacement left them)
//   vec bit i      (0..15): the whole ymm i (VEX vmovdqu; needs AVX)
//   vec bit 16 + i (0..15): the whole zmm i (EVEX vmovdqu64; needs AVX-512F)
//   vec bit 32 + i (0..15): the whole zmm 16 + i (EVEX vmovdqu64; needs AVX-512F)
//   vec bit 48 + i (0..7):  k i, 16 bits (kmovw; needs AVX-512F), or 64 bits with kThunkMask64
//                           (kmovq; needs AVX512BW)
// A register named at several widths is saved at the widest once.
struct ThunkRegs {
  uint32_t regs = 0;
  uint64_t vec = 0;
  explicit operator bool() const { return regs != 0 || vec != 0; }
  bool operator==(const ThunkRegs&) const = default;
};
constexpr uint64_t thunk_ymm(unsigned i) { return uint64_t{1} << i; }
constexpr uint64_t thunk_zmm(unsigned i) { return uint64_t{1} << (16 + i); }  // i in 0..31
constexpr uint64_t thunk_k(unsigned i) { return uint64_t{1} << (48 + i); }
constexpr uint64_t kThunkMask64 = uint64_t{1} << 56;
constexpr uint64_t kThunkVecKnown = (uint64_t{1} << 57) - 1;  // other bits: refused by the agent

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

// One save slot of the frame: register [reg] of [kind], [size] bytes at [disp](%rsp).
enum class SlotKind : uint8_t { xmm, ymm, zmm, k16, k64 };
struct Slot {
  SlotKind kind;
  unsigned reg;
  uint32_t size;
  uint32_t disp = 0;
};

// [store] ? mov reg -> disp32(%rsp) : mov disp32(%rsp) -> reg, all with ModRM 10 reg 100, SIB
// 0x24 (base rsp, no index) and a 32-bit displacement (EVEX scales only 8-bit ones).
inline void move(std::vector<uint8_t>& c, const Slot& s, bool store) {
  unsigned r = s.reg;
  switch (s.kind) {
    case SlotKind::xmm:  // movdqu: F3 [REX.R] 0F 7F (store) / 6F (load)
      c.push_back(0xf3);
      if (r & 8) c.push_back(0x44);
      c.push_back(0x0f);
      c.push_back(store ? 0x7f : 0x6f);
      break;
    case SlotKind::ymm:  // vmovdqu: VEX.256.F3.0F 7F / 6F, two-byte VEX: R' vvvv=1111 L=1 pp=10
      c.push_back(0xc5);
      c.push_back(static_cast<uint8_t>(((r & 8) ? 0x00 : 0x80) | 0x78 | 0x04 | 0x02));
      c.push_back(store ? 0x7f : 0x6f);
      break;
    case SlotKind::zmm:  // vmovdqu64: EVEX.512.F3.0F.W1 7F / 6F
      c.push_back(0x62);
      // P0: R X B R' 0 0 m m (R, X, B, R' inverted), map 0F
      c.push_back(static_cast<uint8_t>(((r & 8) ? 0x00 : 0x80) | 0x40 | 0x20 | ((r & 16) ? 0x00 : 0x10) | 0x01));
      c.push_back(0xfe);  // P1: W=1 vvvv=1111 1 pp=10 (F3)
      c.push_back(0x48);  // P2: z=0 L'L=10 (512) b=0 V'=1 aaa=000
      c.push_back(store ? 0x7f : 0x6f);
      break;
    case SlotKind::k16:  // kmovw: VEX.L0.0F.W0 91 (store) / 90 (load), two-byte VEX
      c.push_back(0xc5);
      c.push_back(0xf8);
      c.push_back(store ? 0x91 : 0x90);
      break;
    case SlotKind::k64:  // kmovq: VEX.L0.0F.W1 91 / 90, three-byte VEX (for W)
      c.push_back(0xc4);
      c.push_back(0xe1);
      c.push_back(0xf8);
      c.push_back(store ? 0x91 : 0x90);
      break;
  }
  c.push_back(static_cast<uint8_t>(0x84 | ((r & 7) << 3)));
  c.push_back(0x24);
  put32(c, s.disp);
}

// The save slots for [preserve], widest first (each register once), laid out from 0(%rsp).
inline std::vector<Slot> slots(const ThunkRegs& preserve) {
  std::vector<Slot> out;
  const uint64_t v = preserve.vec;
  for (unsigned i = 0; i < 32; ++i)
    if (v & thunk_zmm(i)) out.push_back({SlotKind::zmm, i, 64});
  for (unsigned i = 0; i < 16; ++i)
    if ((v & thunk_ymm(i)) && !(v & thunk_zmm(i))) out.push_back({SlotKind::ymm, i, 32});
  for (unsigned i = 0; i < 16; ++i)
    if ((preserve.regs & (1u << (16 + i))) && !(v & (thunk_ymm(i) | thunk_zmm(i)))) out.push_back({SlotKind::xmm, i, 16});
  for (unsigned i = 0; i < 8; ++i)
    if (v & thunk_k(i)) out.push_back({(v & kThunkMask64) ? SlotKind::k64 : SlotKind::k16, i, 8});
  uint32_t at = 0;
  for (auto& s : out) {
    s.disp = at;
    at += s.size;
  }
  return out;
}

}  // namespace thunk_detail

// The thunk for [preserve] (rsp and rax are never preserved), before its call displacement is
// known (fill it with set_thunk_call_target). Its size does not depend on where it goes.
inline EntryThunkCode encode_entry_thunk(const ThunkRegs& preserve) {
  using namespace thunk_detail;
  EntryThunkCode t;
  auto& c = t.code;
  auto& p = t.cfa_program;
  std::vector<unsigned> gprs;
  for (unsigned r = 0; r < 16; ++r)
    if ((preserve.regs & (1u << r)) && r != 0 && r != 4) gprs.push_back(r);
  std::vector<Slot> saves = slots(preserve);
  uint32_t saved = saves.empty() ? 0 : saves.back().disp + saves.back().size;
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
  // rsp = CFA - cfa and the CFA is 16-aligned; before the call rsp must be too. The saves are
  // unaligned moves (movdqu, vmovdqu, vmovdqu64), so 16 is all the frame needs.
  uint32_t frame = ((saved + 15) & ~15u) + ((cfa % 16) ? 8 : 0);  // CFA = 0 (mod 16)
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
  for (const auto& s : saves) move(c, s, true);
  c.push_back(0xff);  // call *disp32(%rip)
  c.push_back(0x15);
  t.call_disp_at = c.size();
  put32(c, 0);
  for (const auto& s : saves) move(c, s, false);
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
inline EntryThunkCode encode_entry_thunk(uint32_t regs) { return encode_entry_thunk(ThunkRegs{regs, 0}); }

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
