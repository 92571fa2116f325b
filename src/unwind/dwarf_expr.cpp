#include "unwind/dwarf_expr.h"

#include <dwarf.h>

namespace lg {

namespace {

constexpr size_t kMaxStack = 64;

Error unsupported(std::string msg) { return Error(ErrorKind::unsupported, std::move(msg)); }

std::string op_name(uint8_t atom) { return fmt::format("DW_OP {:#04x}", atom); }

// user_regs_struct field for each DWARF register number.
uint64_t user_reg(const user_regs_struct& r, int regno) {
  switch (regno) {
    case 0: return r.rax;
    case 1: return r.rdx;
    case 2: return r.rcx;
    case 3: return r.rbx;
    case 4: return r.rsi;
    case 5: return r.rdi;
    case 6: return r.rbp;
    case 7: return r.rsp;
    case 8: return r.r8;
    case 9: return r.r9;
    case 10: return r.r10;
    case 11: return r.r11;
    case 12: return r.r12;
    case 13: return r.r13;
    case 14: return r.r14;
    case 15: return r.r15;
    default: return r.rip;
  }
}

Result<uint64_t> reg_value(const RegisterSet& regs, uint64_t regno) {
  if (regno >= kDwarfRegCount)
    return unsupported(fmt::format("expression uses DWARF register {}, which the unwinder does not track", regno));
  int r = static_cast<int>(regno);
  if (!regs.has(r))
    return unsupported(fmt::format("expression uses register {} whose value is not recoverable in this frame",
                                   dwarf_reg_name(r)));
  return regs.get(r);
}

}  // namespace

const char* dwarf_reg_name(int regno) {
  static const char* const names[kDwarfRegCount] = {"rax", "rdx", "rcx", "rbx", "rsi", "rdi", "rbp", "rsp", "r8",
                                                    "r9",  "r10", "r11", "r12", "r13", "r14", "r15", "rip"};
  return regno >= 0 && regno < kDwarfRegCount ? names[regno] : "?";
}

RegisterSet RegisterSet::from_user_regs(const user_regs_struct& regs) {
  RegisterSet set;
  for (int i = 0; i < kDwarfRegCount; ++i) set.set(i, user_reg(regs, i));
  return set;
}

Result<ExprResult> evaluate_dwarf_expr(std::span<const Dwarf_Op> ops, const RegisterSet& regs,
                                       std::optional<uint64_t> cfa, MemoryReader& mem) {
  if (ops.empty()) return unsupported("empty DWARF expression");
  // A register location (DW_OP_regN / DW_OP_regx) must be the whole expression.
  if (ops.size() == 1 && ((ops[0].atom >= DW_OP_reg0 && ops[0].atom <= DW_OP_reg31) || ops[0].atom == DW_OP_regx)) {
    uint64_t regno = ops[0].atom == DW_OP_regx ? ops[0].number : ops[0].atom - DW_OP_reg0;
    return ExprResult{ExprResult::Kind::reg, regno};
  }

  uint64_t stack[kMaxStack];
  size_t sp = 0;
  auto push = [&](uint64_t v) -> Result<void> {
    if (sp == kMaxStack) return unsupported("DWARF expression stack overflow");
    stack[sp++] = v;
    return {};
  };
  auto need = [&](size_t n, uint8_t atom) -> Result<void> {
    if (sp < n) return unsupported(fmt::format("DWARF expression stack underflow at {}", op_name(atom)));
    return {};
  };
  bool is_value = false;

  for (size_t i = 0; i < ops.size(); ++i) {
    const Dwarf_Op& op = ops[i];
    uint8_t a = op.atom;
    if (is_value) return unsupported("DW_OP_stack_value is not the last operation");
    if (a >= DW_OP_lit0 && a <= DW_OP_lit31) {
      LG_TRY_VOID(push(a - DW_OP_lit0));
      continue;
    }
    if (a >= DW_OP_breg0 && a <= DW_OP_breg31) {
      LG_TRY(uint64_t r, reg_value(regs, a - DW_OP_breg0));
      LG_TRY_VOID(push(r + op.number));  // op.number holds the sign-extended offset
      continue;
    }
    switch (a) {
      case DW_OP_nop: break;
      case DW_OP_bregx: {
        LG_TRY(uint64_t r, reg_value(regs, op.number));
        LG_TRY_VOID(push(r + op.number2));
        break;
      }
      case DW_OP_call_frame_cfa:
        if (!cfa) return unsupported("DW_OP_call_frame_cfa in the CFA expression itself");
        LG_TRY_VOID(push(*cfa));
        break;
      case DW_OP_const1u: case DW_OP_const2u: case DW_OP_const4u: case DW_OP_const8u: case DW_OP_constu:
      case DW_OP_const1s: case DW_OP_const2s: case DW_OP_const4s: case DW_OP_const8s: case DW_OP_consts:
      case DW_OP_addr:
        LG_TRY_VOID(push(op.number));
        break;
      case DW_OP_plus_uconst:
        LG_TRY_VOID(need(1, a));
        stack[sp - 1] += op.number;
        break;
      case DW_OP_dup:
        LG_TRY_VOID(need(1, a));
        LG_TRY_VOID(push(stack[sp - 1]));
        break;
      case DW_OP_drop:
        LG_TRY_VOID(need(1, a));
        --sp;
        break;
      case DW_OP_over:
        LG_TRY_VOID(need(2, a));
        LG_TRY_VOID(push(stack[sp - 2]));
        break;
      case DW_OP_swap:
        LG_TRY_VOID(need(2, a));
        std::swap(stack[sp - 1], stack[sp - 2]);
        break;
      case DW_OP_deref: {
        LG_TRY_VOID(need(1, a));
        LG_TRY(uint64_t v, mem.read_u64(RemoteAddr(stack[sp - 1])));
        stack[sp - 1] = v;
        break;
      }
      case DW_OP_deref_size: {
        LG_TRY_VOID(need(1, a));
        if (op.number == 0 || op.number > 8) return unsupported("DW_OP_deref_size with a size above 8");
        uint8_t buf[8] = {};
        LG_TRY_VOID(mem.read(RemoteAddr(stack[sp - 1]), std::span<uint8_t>(buf, op.number)));
        uint64_t v = 0;
        for (size_t k = 0; k < op.number; ++k) v |= static_cast<uint64_t>(buf[k]) << (8 * k);
        stack[sp - 1] = v;
        break;
      }
      case DW_OP_neg:
        LG_TRY_VOID(need(1, a));
        stack[sp - 1] = -stack[sp - 1];
        break;
      case DW_OP_not:
        LG_TRY_VOID(need(1, a));
        stack[sp - 1] = ~stack[sp - 1];
        break;
      case DW_OP_plus: case DW_OP_minus: case DW_OP_mul: case DW_OP_and: case DW_OP_or: case DW_OP_xor:
      case DW_OP_shl: case DW_OP_shr: case DW_OP_shra: case DW_OP_eq: case DW_OP_ne: case DW_OP_lt:
      case DW_OP_le: case DW_OP_gt: case DW_OP_ge: {
        LG_TRY_VOID(need(2, a));
        uint64_t b = stack[--sp];  // top of stack: the second operand
        uint64_t x = stack[sp - 1];
        int64_t sx = static_cast<int64_t>(x), sb = static_cast<int64_t>(b);
        uint64_t r = 0;
        switch (a) {
          case DW_OP_plus: r = x + b; break;
          case DW_OP_minus: r = x - b; break;
          case DW_OP_mul: r = x * b; break;
          case DW_OP_and: r = x & b; break;
          case DW_OP_or: r = x | b; break;
          case DW_OP_xor: r = x ^ b; break;
          case DW_OP_shl: r = b >= 64 ? 0 : x << b; break;
          case DW_OP_shr: r = b >= 64 ? 0 : x >> b; break;
          case DW_OP_shra: r = static_cast<uint64_t>(b >= 64 ? (sx < 0 ? -1 : 0) : sx >> b); break;
          // DWARF comparisons are signed (DWARF 5, 2.5.1.4).
          case DW_OP_eq: r = sx == sb; break;
          case DW_OP_ne: r = sx != sb; break;
          case DW_OP_lt: r = sx < sb; break;
          case DW_OP_le: r = sx <= sb; break;
          case DW_OP_gt: r = sx > sb; break;
          case DW_OP_ge: r = sx >= sb; break;
        }
        stack[sp - 1] = r;
        break;
      }
      case DW_OP_stack_value:
        is_value = true;
        break;
      default:
        return unsupported(fmt::format("unsupported DWARF operation {} in CFI", op_name(a)));
    }
  }
  if (sp == 0) return unsupported("DWARF expression leaves an empty stack");
  return ExprResult{is_value ? ExprResult::Kind::value : ExprResult::Kind::memory, stack[sp - 1]};
}

Result<uint64_t> evaluate_cfa_rule(std::span<const Dwarf_Op> ops, const RegisterSet& regs, MemoryReader& mem) {
  LG_TRY(ExprResult r, evaluate_dwarf_expr(ops, regs, std::nullopt, mem));
  // The CFA expression's value is the CFA (DW_CFA_def_cfa_expression): no implicit dereference.
  if (r.kind == ExprResult::Kind::reg) return reg_value(regs, r.value);
  return r.value;
}

Result<uint64_t> evaluate_register_rule(std::span<const Dwarf_Op> ops, const RegisterSet& regs, uint64_t cfa,
                                        MemoryReader& mem) {
  LG_TRY(ExprResult r, evaluate_dwarf_expr(ops, regs, cfa, mem));
  switch (r.kind) {
    case ExprResult::Kind::value: return r.value;
    case ExprResult::Kind::reg: return reg_value(regs, r.value);
    case ExprResult::Kind::memory: break;
  }
  return mem.read_u64(RemoteAddr(r.value));
}

// ---- decoding raw bytes ----

namespace {

class ByteReader {
 public:
  explicit ByteReader(std::span<const uint8_t> b) : b_(b) {}
  bool done() const { return pos_ >= b_.size(); }
  size_t pos() const { return pos_; }
  Result<uint64_t> fixed(size_t n) {
    if (b_.size() - pos_ < n) return truncated();
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v |= static_cast<uint64_t>(b_[pos_ + i]) << (8 * i);
    pos_ += n;
    return v;
  }
  Result<uint64_t> uleb() {
    uint64_t v = 0;
    for (unsigned shift = 0;; shift += 7) {
      if (done() || shift >= 64) return truncated();
      uint8_t byte = b_[pos_++];
      v |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if (!(byte & 0x80)) return v;
    }
  }
  Result<uint64_t> sleb() {
    uint64_t v = 0;
    for (unsigned shift = 0;; shift += 7) {
      if (done() || shift >= 64) return truncated();
      uint8_t byte = b_[pos_++];
      v |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if (!(byte & 0x80)) {
        if (shift + 7 < 64 && (byte & 0x40)) v |= ~uint64_t{0} << (shift + 7);
        return v;
      }
    }
  }

 private:
  static Error truncated() { return unsupported("truncated DWARF expression"); }
  std::span<const uint8_t> b_;
  size_t pos_ = 0;
};

uint64_t sign_extend(uint64_t v, unsigned bytes) {
  unsigned bits = bytes * 8;
  if (bits >= 64) return v;
  uint64_t m = uint64_t{1} << (bits - 1);
  return (v ^ m) - m;
}

}  // namespace

Result<std::vector<Dwarf_Op>> decode_dwarf_expr(std::span<const uint8_t> bytes) {
  std::vector<Dwarf_Op> ops;
  ByteReader in(bytes);
  while (!in.done()) {
    Dwarf_Op op{};
    op.offset = in.pos();
    LG_TRY(uint64_t atom, in.fixed(1));
    op.atom = static_cast<uint8_t>(atom);
    uint8_t a = op.atom;
    if (a >= DW_OP_breg0 && a <= DW_OP_breg31) {
      LG_TRY(op.number, in.sleb());
    } else {
      switch (a) {
        case DW_OP_const1u: { LG_TRY(op.number, in.fixed(1)); break; }
        case DW_OP_const2u: { LG_TRY(op.number, in.fixed(2)); break; }
        case DW_OP_const4u: { LG_TRY(op.number, in.fixed(4)); break; }
        case DW_OP_const8u: case DW_OP_addr: { LG_TRY(op.number, in.fixed(8)); break; }
        case DW_OP_const1s: { LG_TRY(uint64_t v, in.fixed(1)); op.number = sign_extend(v, 1); break; }
        case DW_OP_const2s: { LG_TRY(uint64_t v, in.fixed(2)); op.number = sign_extend(v, 2); break; }
        case DW_OP_const4s: { LG_TRY(uint64_t v, in.fixed(4)); op.number = sign_extend(v, 4); break; }
        case DW_OP_const8s: { LG_TRY(op.number, in.fixed(8)); break; }
        case DW_OP_constu: case DW_OP_plus_uconst: case DW_OP_regx: { LG_TRY(op.number, in.uleb()); break; }
        case DW_OP_consts: { LG_TRY(op.number, in.sleb()); break; }
        case DW_OP_deref_size: { LG_TRY(op.number, in.fixed(1)); break; }
        case DW_OP_bregx: {
          LG_TRY(op.number, in.uleb());
          LG_TRY(op.number2, in.sleb());
          break;
        }
        default:
          // Operations without operands; anything with operands we do not know is refused so that
          // the bytes after it are not misread.
          if ((a >= DW_OP_lit0 && a <= DW_OP_lit31) || (a >= DW_OP_reg0 && a <= DW_OP_reg31)) break;
          switch (a) {
            case DW_OP_deref: case DW_OP_dup: case DW_OP_drop: case DW_OP_over: case DW_OP_swap:
            case DW_OP_abs: case DW_OP_and: case DW_OP_div: case DW_OP_minus: case DW_OP_mod: case DW_OP_mul:
            case DW_OP_neg: case DW_OP_not: case DW_OP_or: case DW_OP_plus: case DW_OP_shl: case DW_OP_shr:
            case DW_OP_shra: case DW_OP_xor: case DW_OP_eq: case DW_OP_ge: case DW_OP_gt: case DW_OP_le:
            case DW_OP_lt: case DW_OP_ne: case DW_OP_nop: case DW_OP_call_frame_cfa: case DW_OP_stack_value:
              break;
            default:
              return unsupported(fmt::format("cannot decode {} at offset {}", op_name(a), op.offset));
          }
      }
    }
    ops.push_back(op);
  }
  return ops;
}

}  // namespace lg
