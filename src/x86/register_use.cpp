#include "x86/register_use.h"

#include <Zydis/Zydis.h>

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

// The bit of a register, or 0 for registers we do not track (flags, segment, rip, ...).
RegSet bit_of(ZydisRegister reg) {
  if (reg == ZYDIS_REGISTER_NONE) return 0;
  ZydisRegister big = ZydisRegisterGetLargestEnclosing(ZYDIS_MACHINE_MODE_LONG_64, reg);
  if (big >= ZYDIS_REGISTER_RAX && big <= ZYDIS_REGISTER_R15) return RegSet{1} << (big - ZYDIS_REGISTER_RAX);
  if (big >= ZYDIS_REGISTER_ZMM0 && big <= ZYDIS_REGISTER_ZMM15) return RegSet{1} << (16 + big - ZYDIS_REGISTER_ZMM0);
  return 0;
}

// A write that replaces the whole register (32-bit GPR writes zero-extend; 8/16-bit do not).
bool full_write(ZydisRegister reg) {
  ZydisRegisterClass c = ZydisRegisterGetClass(reg);
  return c == ZYDIS_REGCLASS_GPR64 || c == ZYDIS_REGCLASS_GPR32 || c == ZYDIS_REGCLASS_XMM ||
         c == ZYDIS_REGCLASS_YMM || c == ZYDIS_REGCLASS_ZMM;
}

void reads_writes(const Decoded& d, RegSet& reads, RegSet& writes) {
  reads = writes = 0;
  for (unsigned i = 0; i < d.insn.operand_count; ++i) {
    const auto& op = d.ops[i];
    if (op.type == ZYDIS_OPERAND_TYPE_REGISTER) {
      if (op.actions & ZYDIS_OPERAND_ACTION_MASK_READ) reads |= bit_of(op.reg.value);
      if (op.actions & ZYDIS_OPERAND_ACTION_MASK_WRITE) {
        if (full_write(op.reg.value)) writes |= bit_of(op.reg.value);
        else reads |= bit_of(op.reg.value);  // a partial write keeps the rest: the old value lives on
      }
    } else if (op.type == ZYDIS_OPERAND_TYPE_MEMORY) {
      reads |= bit_of(op.mem.base) | bit_of(op.mem.index);
    }
  }
  // xor r, r and friends read nothing.
  if ((d.insn.mnemonic == ZYDIS_MNEMONIC_XOR || d.insn.mnemonic == ZYDIS_MNEMONIC_PXOR ||
       d.insn.mnemonic == ZYDIS_MNEMONIC_XORPS || d.insn.mnemonic == ZYDIS_MNEMONIC_SUB) &&
      d.insn.operand_count_visible == 2 && d.ops[0].type == ZYDIS_OPERAND_TYPE_REGISTER &&
      d.ops[1].type == ZYDIS_OPERAND_TYPE_REGISTER && d.ops[0].reg.value == d.ops[1].reg.value)
    reads &= ~bit_of(d.ops[0].reg.value);
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
constexpr RegSet kXmmArgs = 0xffu << 16;                                                          // xmm0-7

}  // namespace

RegSet caller_saved() {
  // rax(0) rcx(1) rdx(2) rsi(6) rdi(7) r8-r11(8-11), xmm0-15
  return (1u << 0) | (1u << 1) | (1u << 2) | (1u << 6) | (1u << 7) | (0xfu << 8) | (0xffffu << 16);
}

std::string describe(RegSet regs) {
  static const char* const names[16] = {"rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
                                        "r8",  "r9",  "r10", "r11", "r12", "r13", "r14", "r15"};
  std::string s;
  for (int i = 0; i < 32; ++i) {
    if (!(regs & (RegSet{1} << i))) continue;
    if (!s.empty()) s += ", ";
    s += i < 16 ? std::string(names[i]) : "xmm" + std::to_string(i - 16);
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
    RegSet r, w;
    reads_writes(d, r, w);
    // Partial writes count as clobbers too.
    for (unsigned i = 0; i < d.insn.operand_count; ++i)
      if (d.ops[i].type == ZYDIS_OPERAND_TYPE_REGISTER && (d.ops[i].actions & ZYDIS_OPERAND_ACTION_MASK_WRITE))
        clobbered |= bit_of(d.ops[i].reg.value);
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
