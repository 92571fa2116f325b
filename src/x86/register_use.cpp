#include "x86/register_use.h"

#include <Zydis/Zydis.h>
#include <cpuid.h>

#include <set>
#include <vector>

namespace lg::x86 {

namespace {

struct Decoded {
  ZydisDecodedInstruction insn;
  ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
};

const ZydisDecoder& decoder() {
  static const ZydisDecoder d = [] {
    ZydisDecoder dec;
    ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
    return dec;
  }();
  return d;
}

bool decode(std::span<const uint8_t> code, uint64_t addr, uint64_t at, Decoded& out) {
  if (at < addr || at >= addr + code.size()) return false;
  size_t off = at - addr;
  return ZYAN_SUCCESS(ZydisDecoderDecodeFull(&decoder(), code.data() + off, code.size() - off, &out.insn, out.ops));
}

bool is_vex_or_evex(const ZydisDecodedInstruction& insn) {
  return insn.encoding == ZYDIS_INSTRUCTION_ENCODING_VEX || insn.encoding == ZYDIS_INSTRUCTION_ENCODING_EVEX ||
         insn.encoding == ZYDIS_INSTRUCTION_ENCODING_XOP || insn.encoding == ZYDIS_INSTRUCTION_ENCODING_MVEX;
}

// Vector register number (0..31) of an xmm/ymm/zmm register, or -1.
int vector_index(ZydisRegister reg) {
  if (reg >= ZYDIS_REGISTER_XMM0 && reg <= ZYDIS_REGISTER_XMM31) return reg - ZYDIS_REGISTER_XMM0;
  if (reg >= ZYDIS_REGISTER_YMM0 && reg <= ZYDIS_REGISTER_YMM31) return reg - ZYDIS_REGISTER_YMM0;
  if (reg >= ZYDIS_REGISTER_ZMM0 && reg <= ZYDIS_REGISTER_ZMM31) return reg - ZYDIS_REGISTER_ZMM0;
  return -1;
}

// The bits a register operand names (read at that width), or 0 for registers we do not track
// (flags, segment, rip, x87, ...): xmm i is its low 128 bits, ymm/zmm i all of them.
RegSet bit_of(ZydisRegister reg) {
  if (reg == ZYDIS_REGISTER_NONE) return 0;
  if (reg >= ZYDIS_REGISTER_K0 && reg <= ZYDIS_REGISTER_K7) return reg_bit(64 + static_cast<unsigned>(reg - ZYDIS_REGISTER_K0));
  if (int v = vector_index(reg); v >= 0) {
    if (v >= 16) return reg_bit(48 + static_cast<unsigned>(v - 16));
    RegSet low = reg_bit(16 + static_cast<unsigned>(v));
    return reg >= ZYDIS_REGISTER_XMM0 && reg <= ZYDIS_REGISTER_XMM31 ? low : low | reg_bit(32 + static_cast<unsigned>(v));
  }
  ZydisRegister big = ZydisRegisterGetLargestEnclosing(ZYDIS_MACHINE_MODE_LONG_64, reg);
  if (big >= ZYDIS_REGISTER_RAX && big <= ZYDIS_REGISTER_R15) return reg_bit(static_cast<unsigned>(big - ZYDIS_REGISTER_RAX));
  return 0;
}

// The bits a write of register operand [op] changes: a VEX/EVEX write of a vector register
// zeroes everything above its width (SDM vol. 1, 15.5: "VEX.128 ... bits MAXVL-1:128 zeroed"),
// a legacy SSE write leaves bits 128 and up alone.
RegSet written_bits(const ZydisDecodedInstruction& insn, ZydisRegister reg) {
  int v = vector_index(reg);
  if (v < 0 || v >= 16 || !is_vex_or_evex(insn)) return bit_of(reg);
  return reg_bit(16 + static_cast<unsigned>(v)) | reg_bit(32 + static_cast<unsigned>(v));
}

// A write that replaces the whole of what it changes (32-bit GPR writes zero-extend, 8/16-bit do
// not; an EVEX write merging under a mask keeps the masked-off elements; k writes zero-extend).
bool full_write(const ZydisDecodedOperand& op) {
  if (!(op.actions & ZYDIS_OPERAND_ACTION_WRITE)) return false;  // conditional: a merge
  ZydisRegisterClass c = ZydisRegisterGetClass(op.reg.value);
  return c == ZYDIS_REGCLASS_GPR64 || c == ZYDIS_REGCLASS_GPR32 || c == ZYDIS_REGCLASS_XMM ||
         c == ZYDIS_REGCLASS_YMM || c == ZYDIS_REGCLASS_ZMM || c == ZYDIS_REGCLASS_MASK;
}

constexpr RegSet kAllVector = kXmmLow | kWideVectorState;

bool is_state_save(ZydisMnemonic m) {
  return m == ZYDIS_MNEMONIC_XSAVE || m == ZYDIS_MNEMONIC_XSAVE64 || m == ZYDIS_MNEMONIC_XSAVEC ||
         m == ZYDIS_MNEMONIC_XSAVEC64 || m == ZYDIS_MNEMONIC_XSAVEOPT || m == ZYDIS_MNEMONIC_XSAVEOPT64 ||
         m == ZYDIS_MNEMONIC_XSAVES || m == ZYDIS_MNEMONIC_XSAVES64 || m == ZYDIS_MNEMONIC_FXSAVE ||
         m == ZYDIS_MNEMONIC_FXSAVE64;
}
bool is_state_restore(ZydisMnemonic m) {
  return m == ZYDIS_MNEMONIC_XRSTOR || m == ZYDIS_MNEMONIC_XRSTOR64 || m == ZYDIS_MNEMONIC_XRSTORS ||
         m == ZYDIS_MNEMONIC_XRSTORS64 || m == ZYDIS_MNEMONIC_FXRSTOR || m == ZYDIS_MNEMONIC_FXRSTOR64;
}

// [reads]: registers whose old value the instruction may use; [writes]: registers it replaces
// entirely; [changes]: everything it may change (writes plus partial and conditional writes).
void reads_writes(const Decoded& d, RegSet& reads, RegSet& writes, RegSet* changes = nullptr) {
  reads = writes = 0;
  RegSet changed = 0;
  auto m = d.insn.mnemonic;
  if (m == ZYDIS_MNEMONIC_VZEROUPPER || m == ZYDIS_MNEMONIC_VZEROALL) {  // no operands in Zydis
    writes = m == ZYDIS_MNEMONIC_VZEROUPPER ? kVectorUpper : kVectorUpper | kXmmLow;
    if (changes) *changes = writes;
    return;
  }
  if (is_state_save(m)) reads |= kAllVector;      // reads every component (as a caller's use)
  if (is_state_restore(m)) changed |= kAllVector;  // may change every component
  for (unsigned i = 0; i < d.insn.operand_count; ++i) {
    const auto& op = d.ops[i];
    if (op.type == ZYDIS_OPERAND_TYPE_REGISTER) {
      if (op.actions & ZYDIS_OPERAND_ACTION_MASK_READ) reads |= bit_of(op.reg.value);
      if (op.actions & ZYDIS_OPERAND_ACTION_MASK_WRITE) {
        RegSet w = written_bits(d.insn, op.reg.value);
        changed |= w;
        if (full_write(op)) writes |= w;
        else reads |= w;  // a partial write keeps the rest: the old value lives on
      }
    } else if (op.type == ZYDIS_OPERAND_TYPE_MEMORY) {
      reads |= bit_of(op.mem.base) | bit_of(op.mem.index);
    }
  }
  // xor r, r and friends read nothing (also the three-operand VEX/EVEX forms: vpxor x, y, y).
  const bool zero_idiom2 = (m == ZYDIS_MNEMONIC_XOR || m == ZYDIS_MNEMONIC_PXOR || m == ZYDIS_MNEMONIC_XORPS ||
                            m == ZYDIS_MNEMONIC_SUB) &&
                           d.insn.operand_count_visible == 2 && d.ops[0].type == ZYDIS_OPERAND_TYPE_REGISTER &&
                           d.ops[1].type == ZYDIS_OPERAND_TYPE_REGISTER && d.ops[0].reg.value == d.ops[1].reg.value;
  const bool zero_idiom3 = (m == ZYDIS_MNEMONIC_VPXOR || m == ZYDIS_MNEMONIC_VPXORD || m == ZYDIS_MNEMONIC_VPXORQ ||
                            m == ZYDIS_MNEMONIC_VXORPS || m == ZYDIS_MNEMONIC_VXORPD) &&
                           d.insn.operand_count_visible == 3 && d.insn.avx.mask.mode == ZYDIS_MASK_MODE_DISABLED &&
                           d.ops[1].type == ZYDIS_OPERAND_TYPE_REGISTER && d.ops[2].type == ZYDIS_OPERAND_TYPE_REGISTER &&
                           d.ops[1].reg.value == d.ops[2].reg.value;
  if (zero_idiom2) reads &= ~bit_of(d.ops[0].reg.value);
  if (zero_idiom3) reads &= ~bit_of(d.ops[1].reg.value);
  if (changes) *changes = changed;
}

bool branch_target(const Decoded& d, uint64_t at, uint64_t& target) {
  for (unsigned i = 0; i < d.insn.operand_count_visible; ++i) {
    const auto& op = d.ops[i];
    if (op.type == ZYDIS_OPERAND_TYPE_IMMEDIATE && op.imm.is_relative) {
      ZyanU64 t;
      if (ZYAN_SUCCESS(ZydisCalcAbsoluteAddress(&d.insn, &op, at, &t))) {
        target = t;
        return true;
      }
    }
  }
  return false;
}

constexpr RegSet kArgs = (1u << 7) | (1u << 6) | (1u << 2) | (1u << 1) | (1u << 8) | (1u << 9);  // rdi rsi rdx rcx r8 r9
// xmm0-7 at every width: __m256/__m512 arguments pass in ymm/zmm0-7 (psABI 3.2.3).
constexpr RegSet kXmmArgs = (RegSet{0xff} << 16) | (RegSet{0xff} << 32);

}  // namespace

RegSet caller_saved() {
  // rax(0) rcx(1) rdx(2) rsi(6) rdi(7) r8-r11(8-11); every vector register at every width and
  // every mask register (psABI 3.2.1: "all of them are caller-saved", figure 3.4).
  return RegSet{(1u << 0) | (1u << 1) | (1u << 2) | (1u << 6) | (1u << 7) | (0xfu << 8)} | kAllVector;
}

std::string describe(RegSet regs) {
  static const char* const names[16] = {"rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
                                        "r8",  "r9",  "r10", "r11", "r12", "r13", "r14", "r15"};
  std::string s;
  for (unsigned i = 0; i < 72; ++i) {
    if (!(regs & reg_bit(i))) continue;
    if (!s.empty()) s += ", ";
    if (i < 16) s += names[i];
    else if (i < 32) s += "xmm" + std::to_string(i - 16);
    else if (i < 48) s += "ymm" + std::to_string(i - 32) + ".hi";
    else if (i < 64) s += "zmm" + std::to_string(i - 48 + 16);
    else s += "k" + std::to_string(i - 64);
  }
  return s;
}

RegSet clobbered_by(std::span<const uint8_t> code, uint64_t addr) {
  RegSet clobbered = 0;
  Decoded d;
  for (uint64_t at = addr; at < addr + code.size(); at += d.insn.length) {
    if (!decode(code, addr, at, d)) return caller_saved();
    auto cat = d.insn.meta.category;
    if (cat == ZYDIS_CATEGORY_CALL || cat == ZYDIS_CATEGORY_SYSCALL) return caller_saved();
    uint64_t target;
    if (cat == ZYDIS_CATEGORY_UNCOND_BR || cat == ZYDIS_CATEGORY_COND_BR) {
      // A displacement of 0 is a relocation not applied yet (patch code in an ET_REL): a jump to
      // another section, such as the function's .cold part, which may do anything.
      if (!branch_target(d, at, target) || target < addr || target >= addr + code.size() ||
          target == at + d.insn.length)
        return caller_saved();
    }
    RegSet r, w, changed;
    reads_writes(d, r, w, &changed);
    clobbered |= changed;  // partial writes count as clobbers too
  }
  return clobbered & caller_saved();
}

CallSites call_sites(std::span<const uint8_t> code, uint64_t addr, uint64_t callee) {
  CallSites out;
  Decoded d;
  for (uint64_t at = addr; at < addr + code.size();) {
    if (!decode(code, addr, at, d)) {
      ++at;  // resynchronise after data or padding
      continue;
    }
    uint64_t target;
    auto cat = d.insn.meta.category;
    if ((cat == ZYDIS_CATEGORY_CALL || cat == ZYDIS_CATEGORY_UNCOND_BR) && branch_target(d, at, target) &&
        target == callee) {
      if (cat == ZYDIS_CATEGORY_CALL) out.returns.push_back(at + d.insn.length);
      else out.tail_jumps = true;
    }
    at += d.insn.length;
  }
  return out;
}

bool calls_unknown(std::span<const uint8_t> code, uint64_t addr, const std::function<bool(uint64_t)>& is_known_function) {
  Decoded d;
  for (uint64_t at = addr; at < addr + code.size();) {
    if (!decode(code, addr, at, d)) return true;
    if (d.insn.meta.category == ZYDIS_CATEGORY_CALL) {
      uint64_t target;
      if (!branch_target(d, at, target) || !is_known_function(target)) return true;
    }
    at += d.insn.length;
  }
  return false;
}

AvxEncoding avx_encoding(std::span<const uint8_t> code, uint64_t addr) {
  AvxEncoding out = AvxEncoding::none;
  Decoded d;
  for (uint64_t at = addr; at < addr + code.size();) {
    if (!decode(code, addr, at, d)) {
      ++at;
      continue;
    }
    at += d.insn.length;
    if (!is_vex_or_evex(d.insn)) continue;
    bool mask = false;
    for (unsigned i = 0; i < d.insn.operand_count; ++i)
      mask |= d.ops[i].type == ZYDIS_OPERAND_TYPE_REGISTER && ZydisRegisterGetClass(d.ops[i].reg.value) == ZYDIS_REGCLASS_MASK;
    if (mask || d.insn.encoding == ZYDIS_INSTRUCTION_ENCODING_EVEX || d.insn.encoding == ZYDIS_INSTRUCTION_ENCODING_MVEX)
      return AvxEncoding::evex;
    out = AvxEncoding::vex;
  }
  return out;
}

VectorFeatures host_vector_features() {
  VectorFeatures f;
  unsigned a, b, c, d;
  __cpuid(1, a, b, c, d);
  if (!(c & bit_OSXSAVE)) return f;  // no XGETBV: only the legacy SSE state exists
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  uint64_t xcr0 = (uint64_t{hi} << 32) | lo;
  f.avx = (c & bit_AVX) && (xcr0 & 0x6) == 0x6;  // SSE and AVX state enabled
  if (f.avx && __get_cpuid_max(0, nullptr) >= 7) {
    __cpuid_count(7, 0, a, b, c, d);
    f.avx512 = (b & bit_AVX512F) && (xcr0 & 0xe0) == 0xe0;  // opmask, ZMM_Hi256, Hi16_ZMM
    f.avx512bw = f.avx512 && (b & bit_AVX512BW);
  }
  return f;
}

ThunkRegs thunk_regs(RegSet preserve, VectorFeatures f) {
  ThunkRegs t;
  t.regs = static_cast<uint32_t>(preserve & (kGeneralRegs | kXmmLow));
  for (unsigned i = 0; i < 16; ++i) {
    if (!(preserve & reg_bit(32 + i))) continue;
    if (f.avx512) t.vec |= thunk_zmm(i);  // bits 511:256 exist too
    else if (f.avx) t.vec |= thunk_ymm(i);
  }
  if (f.avx512) {
    for (unsigned i = 0; i < 16; ++i)
      if (preserve & reg_bit(48 + i)) t.vec |= thunk_zmm(16 + i);
    for (unsigned i = 0; i < 8; ++i)
      if (preserve & reg_bit(64 + i)) t.vec |= thunk_k(i);
    if ((t.vec & (uint64_t{0xff} << 48)) && f.avx512bw) t.vec |= kThunkMask64;
  }
  return t;
}

namespace {

enum class Walk { after_call, on_entry };
constexpr int kMaxCalleeDepth = 3;

// Follows every path of [code]@[addr] from [start] while registers of [watch] are live.
// after_call: reaching `ret` with registers still watched is a read unless callers_assume_all;
// on_entry: `ret` ends the path (the caller continues with whatever is still watched).
ReadAfterCall walk(std::span<const uint8_t> code, uint64_t addr, uint64_t start, RegSet watch, Walk mode,
                   bool callers_assume_all, const FindCallee& find_callee, int depth) {
  ReadAfterCall result;
  struct Path {
    uint64_t at;
    RegSet watch;
  };
  std::vector<Path> work{{start, watch}};
  std::set<std::pair<uint64_t, RegSet>> seen;
  int budget = 4096;
  Decoded d;
  auto callee_of = [&](uint64_t target) -> std::optional<Callee> {
    if (!find_callee || depth >= kMaxCalleeDepth) return std::nullopt;
    return find_callee(target);
  };
  while (!work.empty()) {
    Path p = work.back();
    work.pop_back();
    while (p.watch != 0) {
      if (!seen.insert({p.at, p.watch}).second) break;
      if (--budget < 0 || !decode(code, addr, p.at, d)) {
        result.unsure = true;
        result.at = p.at;
        return result;
      }
      RegSet r, w;
      reads_writes(d, r, w);
      auto cat = d.insn.meta.category;
      uint64_t next = p.at + d.insn.length, target = 0;
      bool direct = (cat == ZYDIS_CATEGORY_CALL || cat == ZYDIS_CATEGORY_UNCOND_BR || cat == ZYDIS_CATEGORY_COND_BR) &&
                    branch_target(d, p.at, target);
      bool leaves = direct && (target < addr || target >= addr + code.size());
      RegSet kill = 0;
      bool ends = false;
      if (cat == ZYDIS_CATEGORY_CALL || (cat == ZYDIS_CATEGORY_UNCOND_BR && leaves)) {
        // A call passes argument registers on; a tail jump out of the function too.
        std::optional<Callee> callee = direct ? callee_of(target) : std::nullopt;
        std::optional<RegSet> reads =
            callee ? reads_on_entry(callee->code, callee->addr, p.watch, find_callee, depth + 1) : std::nullopt;
        if (reads) {
          r |= *reads;
          if (!callee->same_unit) kill = caller_saved();
        } else {
          r |= kArgs | kXmmArgs;
          kill = caller_saved();  // the next callee may clobber them all
        }
        ends = cat == ZYDIS_CATEGORY_UNCOND_BR;  // a tail call: the callee returns for us
      }
      if (r & p.watch) {
        result.read |= r & p.watch;
        if (!result.at) result.at = p.at;
        return result;
      }
      p.watch &= ~w;
      p.watch &= ~kill;
      if (ends || cat == ZYDIS_CATEGORY_RET) {
        if (mode == Walk::after_call && !callers_assume_all) {
          result.read |= p.watch;
          if (!result.at) result.at = p.at;
          return result;
        }
        break;
      }
      if (cat == ZYDIS_CATEGORY_UNCOND_BR || cat == ZYDIS_CATEGORY_COND_BR) {
        if (!direct || leaves) {
          // A jump table, or a conditional tail call out of the function: cannot follow.
          result.unsure = true;
          result.at = p.at;
          return result;
        }
        if (cat == ZYDIS_CATEGORY_COND_BR) work.push_back({target, p.watch});
        else next = target;
      }
      p.at = next;
    }
  }
  return result;
}

}  // namespace

ReadAfterCall read_after_call(std::span<const uint8_t> code, uint64_t addr, uint64_t return_addr, RegSet watch,
                              bool callers_assume_all, const FindCallee& find_callee) {
  return walk(code, addr, return_addr, watch, Walk::after_call, callers_assume_all, find_callee, 0);
}

std::optional<RegSet> reads_on_entry(std::span<const uint8_t> code, uint64_t addr, RegSet watch,
                                     const FindCallee& find_callee, int depth) {
  if (depth > kMaxCalleeDepth) return std::nullopt;
  auto r = walk(code, addr, addr, watch, Walk::on_entry, true, find_callee, depth);
  if (r.unsure) return std::nullopt;
  return r.read;
}

}  // namespace lg::x86
