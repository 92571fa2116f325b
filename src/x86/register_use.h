// Which caller-saved registers a function really clobbers, and whether callers rely on the rest.
//
// GCC's -fipa-ra (on at -O2) lets a caller keep values in call-clobbered registers across a call
// when it knows the callee (same object, body seen) does not touch them. A replacement that
// clobbers more than the original breaks such callers (observed: a leaf check_access() replaced
// by one calling fprintf: main kept a pointer in %rdx across the call and crashed). The
// controller therefore compares what the original and the replacement clobber and, when the
// replacement clobbers more, decodes every direct caller to prove none of them reads those
// registers after the call.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "x86/entry_thunk.h"

namespace lg::x86 {

// A set of registers, in 72 bits:
//   bit i       (0..15): rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8..r15 (encoding order)
//   bit 16 + i  (0..15): the low 128 bits of vector register i (xmm i)
//   bit 32 + i  (0..15): bits 128 and up of vector register i ("ymm i.hi": 255:128 of ymm i, and
//                        511:256 of zmm i with AVX-512; VEX/EVEX writes zero all of them together)
//   bit 48 + i  (0..15): vector register 16 + i, whole (xmm/ymm/zmm 16..31, AVX-512 only)
//   bit 64 + i  (0..7):  mask register k i (AVX-512 only)
// A legacy SSE write of xmm i changes only bit 16 + i; a VEX or EVEX one changes 16 + i and
// 32 + i (the upper part becomes zero); VZEROUPPER changes every 32 + i.
using RegSet = unsigned __int128;

constexpr RegSet reg_bit(unsigned i) { return RegSet{1} << i; }
constexpr RegSet kGeneralRegs = 0xffff;
constexpr RegSet kXmmLow = RegSet{0xffff} << 16;
constexpr RegSet kVectorUpper = RegSet{0xffff} << 32;  // ymm i.hi
constexpr RegSet kVectorHigh16 = RegSet{0xffff} << 48;  // xmm/ymm/zmm 16..31
constexpr RegSet kMaskRegs = RegSet{0xff} << 64;
// Everything beyond the low 128 bits of xmm0..15 (AVX and AVX-512 state).
constexpr RegSet kWideVectorState = kVectorUpper | kVectorHigh16 | kMaskRegs;

RegSet caller_saved();                 // SysV: rax rcx rdx rsi rdi r8-r11, all vector and mask state
std::string describe(RegSet regs);     // "rcx, rdx, xmm0, ymm3.hi, zmm17, k1"

// The caller-saved registers a function may change, decoding [code] at [addr]. Any call,
// a jump leaving the function (or with a zero displacement: an unapplied relocation in a patch
// object, e.g. to its .cold part), or an undecodable byte makes it "all caller-saved".
RegSet clobbered_by(std::span<const uint8_t> code, uint64_t addr);

// Direct calls (their return addresses) and direct tail jumps to [callee] inside the function
// [code]@[addr].
struct CallSites {
  std::vector<uint64_t> returns;
  bool tail_jumps = false;
};
CallSites call_sites(std::span<const uint8_t> code, uint64_t addr, uint64_t callee);

// Whether the function [code]@[addr] may read a register of [watch] after the call that returns
// to [return_addr], before writing it. Follows branches inside the function (bounded).
// Reaching `ret` with registers still watched is safe only when [callers_assume_all] (the
// function's own callers already treat every caller-saved register as clobbered, e.g. because
// it calls something outside its object); otherwise it counts as a read.
struct ReadAfterCall {
  RegSet read = 0;      // registers that may be read (the hazard)
  bool unsure = false;  // the analysis ran out of budget or left the function
  uint64_t at = 0;      // address of the first offending instruction
};
//
// A later call inside the function counts as reading every argument register (xmm0-7 at full
// width: __m256/__m512 arguments pass in ymm/zmm0-7) and clobbering
// every caller-saved one, unless [find_callee] knows the callee: then it reads only what the
// callee (decoded, following its own known calls a few levels deep) may read before writing,
// and clobbers nothing — the caller may rely on the callee preserving a register (IPA-RA), so
// watched registers stay watched after it returns. A callee in another compilation unit
// (same_unit false) makes the caller assume the ABI: everything caller-saved is clobbered.
struct Callee {
  std::span<const uint8_t> code;
  uint64_t addr = 0;
  bool same_unit = true;
};
using FindCallee = std::function<std::optional<Callee>(uint64_t target)>;
ReadAfterCall read_after_call(std::span<const uint8_t> code, uint64_t addr, uint64_t return_addr, RegSet watch,
                              bool callers_assume_all, const FindCallee& find_callee = nullptr);

// The registers of [watch] that a call to the function [code]@[addr] may read before writing
// them (its argument registers in use, precisely). nullopt when it cannot tell (a jump table, an
// undecodable byte, too deep): callers then count every argument register as read.
std::optional<RegSet> reads_on_entry(std::span<const uint8_t> code, uint64_t addr, RegSet watch,
                                     const FindCallee& find_callee, int depth = 0);

// Whether the function calls something its compiler could not see into (an indirect call, or a
// direct call to an address [is_known_function] rejects, such as a PLT stub): then its own
// callers already treat every caller-saved register as clobbered.
bool calls_unknown(std::span<const uint8_t> code, uint64_t addr, const std::function<bool(uint64_t)>& is_known_function);

// The widest vector encoding [code]@[addr] uses (decoded linearly, skipping what does not
// decode): only VEX/XOP instructions reach ymm upper halves, only EVEX ones (and VEX mask
// instructions, counted as evex) zmm bits 511:256, zmm16-31 and k0-7, and GCC encodes every
// SSE instruction of a unit built with AVX that way. So callers in a unit without them keep no
// value there across a call (short of one holding a __m256 only between calls to other units,
// with no vector instruction of its own), and an AVX2 unit's values need only ymm saves.
enum class AvxEncoding { none, vex, evex };
AvxEncoding avx_encoding(std::span<const uint8_t> code, uint64_t addr);

// The vector state the operating system enabled on this machine (XCR0, read with XGETBV), which
// is the target's: the kernel enables the same features for every process.
struct VectorFeatures {
  bool avx = false;       // ymm upper halves (XCR0 bits 1, 2)
  bool avx512 = false;    // zmm upper halves, zmm16-31, k0-7 (XCR0 bits 5-7, CPUID AVX512F)
  bool avx512bw = false;  // 64-bit mask registers (kmovq)
};
VectorFeatures host_vector_features();

// How an entry thunk (src/x86/entry_thunk.h) saves [preserve] on a machine with [f]: ymm i.hi as
// the whole ymm (VEX) or, with AVX-512, the whole zmm (EVEX); zmm16-31 and k0-7 with EVEX/VEX
// moves. State the machine does not have does not exist, so no caller holds a value there and
// nothing is saved for it.
ThunkRegs thunk_regs(RegSet preserve, VectorFeatures f);

}  // namespace lg::x86
