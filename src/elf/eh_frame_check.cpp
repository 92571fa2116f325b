#include "elf/eh_frame_check.h"

#include <cstring>
#include <map>
#include <string>

namespace lg::elf {

namespace {

// DW_EH_PE_* (LSB 5.0 §10.5.1).
constexpr uint8_t kOmit = 0xff;
constexpr uint8_t kIndirect = 0x80;

// 1. libgcc's x86-64 unwinder has DWARF_FRAME_REGISTERS = 17 columns (rax..r15 and the return
//    address); _Unwind_GetGR asserts on anything above.
constexpr uint64_t kRegisters = 17;
// 2. execute_stack_op (libgcc/unwind-dw2.c) has a fixed stack of 64 entries and aborts on
//    overflow or underflow.
constexpr int kMaxStack = 64;

class Cursor {
 public:
  Cursor(std::span<const uint8_t> d, uint64_t pos, uint64_t end) : d_(d), pos_(pos), end_(end) {}
  uint64_t pos() const { return pos_; }
  uint64_t end() const { return end_; }
  bool done() const { return pos_ >= end_; }
  bool u8(uint8_t& v) {
    if (pos_ + 1 > end_) return false;
    v = d_[pos_++];
    return true;
  }
  bool fixed(unsigned n, uint64_t& v, bool sign) {
    if (n > end_ - pos_) return false;
    uint64_t x = 0;
    std::memcpy(&x, d_.data() + pos_, n);
    if (sign && n < 8 && (x >> (8 * n - 1)) & 1) x |= ~0ull << (8 * n);
    v = x;
    pos_ += n;
    return true;
  }
  bool skip(uint64_t n) {
    if (n > end_ - pos_) return false;
    pos_ += n;
    return true;
  }
  bool uleb(uint64_t& v) {
    v = 0;
    for (unsigned shift = 0; shift < 70; shift += 7) {
      uint8_t b;
      if (!u8(b)) return false;
      if (shift == 63 && (b & 0x7e)) return false;  // does not fit 64 bits
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return true;
    }
    return false;
  }
  bool sleb(int64_t& v) {
    uint64_t r = 0;
    unsigned shift = 0;
    uint8_t b;
    do {
      if (shift >= 70 || !u8(b)) return false;
      if (shift < 64) r |= static_cast<uint64_t>(b & 0x7f) << shift;
      shift += 7;
    } while (b & 0x80);
    if (shift < 64 && (b & 0x40)) r |= ~0ull << shift;
    v = static_cast<int64_t>(r);
    return true;
  }

 private:
  std::span<const uint8_t> d_;
  uint64_t pos_, end_;
};

// Bytes of a fixed-size encoding's value; 0 for the variable ones (uleb128/sleb128); -1 invalid.
int encoded_size(uint8_t enc) {
  switch (enc & 0x0f) {
    case 0x00: return 8;  // absptr
    case 0x01: return 0;  // uleb128
    case 0x02: return 2;  // udata2
    case 0x03: return 4;  // udata4
    case 0x04: return 8;  // udata8
    case 0x09: return 0;  // sleb128
    case 0x0a: return 2;  // sdata2
    case 0x0b: return 4;  // sdata4
    case 0x0c: return 8;  // sdata8
    default: return -1;
  }
}
bool encoded_signed(uint8_t enc) { return (enc & 0x08) != 0; }

// An encoding libgcc decodes without a text/data base (registered frames have none): the value
// absolute or PC-relative, optionally indirect.
bool valid_pointer_encoding(uint8_t enc, bool allow_indirect) {
  if (enc == kOmit) return true;
  if ((enc & kIndirect) && !allow_indirect) return false;
  uint8_t app = enc & 0x70;
  if (app != 0x00 && app != 0x10) return false;
  return encoded_size(enc) >= 0;
}

bool read_encoded(Cursor& c, uint8_t enc, uint64_t& v) {
  int n = encoded_size(enc);
  if (n < 0) return false;
  if (n > 0) return c.fixed(static_cast<unsigned>(n), v, encoded_signed(enc));
  if (encoded_signed(enc)) {
    int64_t s;
    if (!c.sleb(s)) return false;
    v = static_cast<uint64_t>(s);
    return true;
  }
  return c.uleb(v);
}

class Checker {
 public:
  Checker(std::span<const uint8_t> t, const EhFrameFdeCheck& check, std::string_view label)
      : t_(t), check_(check), label_(label) {}

  Result<EhFrameSummary> run() {
    EhFrameSummary sum;
    uint64_t off = 0;
    while (off < t_.size()) {
      if (t_.size() - off < 4) return bad(off, "{} bytes after the last record are too few for a record", t_.size() - off);
      uint32_t length;
      std::memcpy(&length, t_.data() + off, 4);
      if (length == 0) {
        sum.end = off;
        return sum;
      }
      if (length == 0xffffffffu)
        return Error(ErrorKind::unsupported, fmt::format("{}: .eh_frame record at offset {:#x} uses the 64-bit DWARF format, which is not supported", label_, off));
      if (length > t_.size() - off - 4)
        return bad(off, "length {:#x} runs past the end of the table ({:#x} bytes left)", length, t_.size() - off - 4);
      if (length < 4) return bad(off, "length {} is too short for a record", length);
      uint64_t end = off + 4 + length;
      uint32_t id;
      std::memcpy(&id, t_.data() + off + 4, 4);
      if (id == 0) {
        LG_TRY_VOID(cie(off, end));
        ++sum.cies;
      } else {
        LG_TRY_VOID(fde(off, end, id));
        ++sum.fdes;
      }
      off = end;
    }
    sum.end = off;
    return sum;
  }

 private:
  struct Cie {
    uint8_t fde_encoding = 0;  // absptr unless 'R'
    uint8_t lsda_encoding = kOmit;
    bool has_z = false;
  };

  template <class... Args>
  Error bad(uint64_t off, fmt::format_string<Args...> f, Args&&... args) const {
    return Error(ErrorKind::bad_patch,
                 fmt::format("{}: malformed .eh_frame record at offset {:#x}: {}", label_, off, fmt::format(f, std::forward<Args>(args)...)));
  }

  Result<void> cie(uint64_t off, uint64_t end) {
    Cursor c(t_, off + 8, end);
    Cie out;
    uint8_t version;
    if (!c.u8(version)) return bad(off, "CIE without a version");
    if (version != 1 && version != 3 && version != 4) return bad(off, "CIE version {} (1, 3 or 4 expected)", version);
    uint64_t aug_start = c.pos();
    while (true) {
      uint8_t ch;
      if (!c.u8(ch)) return bad(off, "CIE augmentation string is not terminated inside the record");
      if (ch == 0) break;
    }
    std::string_view aug(reinterpret_cast<const char*>(t_.data() + aug_start), c.pos() - aug_start - 1);
    if (!aug.empty() && aug[0] != 'z') return bad(off, "CIE augmentation '{}' is not supported (it must start with 'z')", aug);
    for (size_t i = 1; i < aug.size(); ++i)
      if (aug[i] != 'R' && aug[i] != 'P' && aug[i] != 'L' && aug[i] != 'S')
        return bad(off, "CIE augmentation '{}' has the unknown character '{}'", aug, aug[i]);
    if (version == 4) {
      uint8_t asz, ssz;
      if (!c.u8(asz) || !c.u8(ssz) || asz != 8 || ssz != 0) return bad(off, "CIE version 4 must have address size 8 and segment size 0");
    }
    uint64_t code_align, ra;
    int64_t data_align;
    if (!c.uleb(code_align) || !c.sleb(data_align)) return bad(off, "CIE alignment factors run past the record");
    if (version == 1) {
      uint8_t r;
      if (!c.u8(r)) return bad(off, "CIE without a return address column");
      ra = r;
    } else if (!c.uleb(ra)) {
      return bad(off, "CIE return address column runs past the record");
    }
    if (ra >= kRegisters) return bad(off, "CIE return address column {} is not a register of x86-64 (0..{})", ra, kRegisters - 1);
    if (!aug.empty()) {
      out.has_z = true;
      uint64_t aug_len;
      if (!c.uleb(aug_len) || aug_len > c.end() - c.pos()) return bad(off, "CIE augmentation data runs past the record");
      Cursor a(t_, c.pos(), c.pos() + aug_len);
      for (size_t i = 1; i < aug.size(); ++i) {
        uint8_t enc;
        switch (aug[i]) {
          case 'R':
            if (!a.u8(enc)) return bad(off, "CIE augmentation data too short for 'R'");
            if (enc == kOmit || !valid_pointer_encoding(enc, false) || encoded_size(enc) == 0)
              return bad(off, "FDE pointer encoding {:#04x} is not one the unwinder can use (fixed size, absolute or PC-relative)", enc);
            out.fde_encoding = enc;
            break;
          case 'P': {
            if (!a.u8(enc)) return bad(off, "CIE augmentation data too short for 'P'");
            if (enc == kOmit || !valid_pointer_encoding(enc, true)) return bad(off, "personality pointer encoding {:#04x} is invalid", enc);
            uint64_t v;
            if (!read_encoded(a, enc, v)) return bad(off, "personality pointer runs past the augmentation data");
            break;
          }
          case 'L':
            if (!a.u8(enc)) return bad(off, "CIE augmentation data too short for 'L'");
            if (!valid_pointer_encoding(enc, true)) return bad(off, "LSDA pointer encoding {:#04x} is invalid", enc);
            out.lsda_encoding = enc;
            break;
          default:  // 'S': a signal frame, no data
            break;
        }
      }
      c.skip(aug_len);
    }
    int depth = 0;
    LG_TRY_VOID(instructions(off, c, out, /*in_cie=*/true, depth));
    cies_[off] = out;
    cie_depth_[off] = depth;
    return ok_result();
  }

  Result<void> fde(uint64_t off, uint64_t end, uint32_t id) {
    // The CIE pointer is the distance back from the pointer field to the CIE.
    if (id > off + 4) return bad(off, "FDE's CIE pointer {:#x} points before the table", id);
    uint64_t cie_off = off + 4 - id;
    auto it = cies_.find(cie_off);
    if (it == cies_.end()) return bad(off, "FDE's CIE pointer {:#x} does not point to a CIE of this table (offset {:#x})", id, cie_off);
    const Cie& cie = it->second;
    Cursor c(t_, off + 8, end);
    EhFrameFde f;
    f.offset = off;
    f.pc_begin_field = c.pos();
    f.encoding = cie.fde_encoding;
    uint64_t range;
    if (!read_encoded(c, cie.fde_encoding, f.pc_begin_raw)) return bad(off, "FDE pc_begin runs past the record");
    if (!read_encoded(c, cie.fde_encoding & 0x0f, range)) return bad(off, "FDE pc_range runs past the record");
    f.pc_range = range;
    if (cie.has_z) {
      uint64_t aug_len;
      if (!c.uleb(aug_len) || aug_len > c.end() - c.pos()) return bad(off, "FDE augmentation data runs past the record");
      Cursor a(t_, c.pos(), c.pos() + aug_len);
      uint64_t lsda;
      if (cie.lsda_encoding != kOmit && !read_encoded(a, cie.lsda_encoding, lsda)) return bad(off, "FDE LSDA pointer runs past its augmentation data");
      c.skip(aug_len);
    }
    int depth = cie_depth_[cie_off];
    LG_TRY_VOID(instructions(off, c, cie, /*in_cie=*/false, depth));
    if (check_) {
      auto r = check_(f);
      if (!r) return Error(r.error()).context(fmt::format("{}: .eh_frame FDE at offset {:#x}", label_, off));
    }
    return ok_result();
  }

  Result<void> reg(uint64_t off, uint64_t r) const {
    if (r >= kRegisters) return bad(off, "call frame instruction names register {}, not a register of x86-64 (0..{})", r, kRegisters - 1);
    return ok_result();
  }

  // Call frame instructions (DWARF 4 §6.4.2) up to the end of the record.
  Result<void> instructions(uint64_t off, Cursor& c, const Cie& cie, bool in_cie, int& depth) {
    auto trunc = [&] { return bad(off, "call frame instruction at {:#x} runs past the record", c.pos()); };
    while (!c.done()) {
      uint64_t at = c.pos();
      uint8_t op = 0;
      c.u8(op);
      uint64_t a, b;
      int64_t s;
      switch (op >> 6) {
        case 1: continue;  // DW_CFA_advance_loc
        case 2:            // DW_CFA_offset
          LG_TRY_VOID(reg(off, op & 0x3f));
          if (!c.uleb(a)) return trunc();
          continue;
        case 3:  // DW_CFA_restore
          LG_TRY_VOID(reg(off, op & 0x3f));
          continue;
        default: break;
      }
      switch (op) {
        case 0x00: break;  // nop
        case 0x01:         // set_loc
          if (in_cie) return bad(off, "DW_CFA_set_loc in a CIE");
          if (!read_encoded(c, cie.fde_encoding, a)) return trunc();
          break;
        case 0x02: if (!c.skip(1)) return trunc(); break;
        case 0x03: if (!c.skip(2)) return trunc(); break;
        case 0x04: if (!c.skip(4)) return trunc(); break;
        case 0x05:  // offset_extended
        case 0x09:  // register (b is a register too)
        case 0x14:  // val_offset
        case 0x2f:  // GNU_negative_offset_extended
          if (!c.uleb(a) || !c.uleb(b)) return trunc();
          LG_TRY_VOID(reg(off, a));
          if (op == 0x09) LG_TRY_VOID(reg(off, b));
          break;
        case 0x06: case 0x07: case 0x08: case 0x0d:  // restore_extended, undefined, same_value, def_cfa_register
          if (!c.uleb(a)) return trunc();
          LG_TRY_VOID(reg(off, a));
          break;
        case 0x0a: ++depth; break;  // remember_state
        case 0x0b:                  // restore_state
          if (depth == 0) return bad(off, "DW_CFA_restore_state at {:#x} without a DW_CFA_remember_state", at);
          --depth;
          break;
        case 0x0c:  // def_cfa
          if (!c.uleb(a) || !c.uleb(b)) return trunc();
          LG_TRY_VOID(reg(off, a));
          break;
        case 0x0e: case 0x2e:  // def_cfa_offset, GNU_args_size
          if (!c.uleb(a)) return trunc();
          break;
        case 0x13:  // def_cfa_offset_sf
          if (!c.sleb(s)) return trunc();
          break;
        case 0x11: case 0x12: case 0x15:  // offset_extended_sf, def_cfa_sf, val_offset_sf
          if (!c.uleb(a) || !c.sleb(s)) return trunc();
          LG_TRY_VOID(reg(off, a));
          break;
        case 0x0f:  // def_cfa_expression
          if (!c.uleb(a)) return trunc();
          LG_TRY_VOID(expression(off, c, a, 0));
          break;
        case 0x10: case 0x16:  // expression, val_expression: the CFA is pushed first
          if (!c.uleb(a) || !c.uleb(b)) return trunc();
          LG_TRY_VOID(reg(off, a));
          LG_TRY_VOID(expression(off, c, b, 1));
          break;
        default:
          return bad(off, "unknown call frame instruction {:#04x} at {:#x}", op, at);
      }
    }
    return ok_result();
  }

  // A DWARF expression of [len] bytes as libgcc's execute_stack_op evaluates it, with [stack]
  // entries to start with. Branches (DW_OP_skip, DW_OP_bra) are refused: GCC never emits them
  // in CFI, and without them the stack depth is checked in one pass.
  Result<void> expression(uint64_t off, Cursor& outer, uint64_t len, int stack) {
    if (len > outer.end() - outer.pos()) return bad(off, "DWARF expression of {} bytes runs past the record", len);
    Cursor c(t_, outer.pos(), outer.pos() + len);
    outer.skip(len);
    auto trunc = [&] { return bad(off, "DWARF expression operand at {:#x} runs past the expression", c.pos()); };
    while (!c.done()) {
      uint64_t at = c.pos();
      uint8_t op = 0;
      c.u8(op);
      uint64_t a;
      int64_t s;
      int pops = 0, pushes = 0;
      if (op >= 0x30 && op <= 0x4f) {  // lit0..lit31
        pushes = 1;
      } else if (op >= 0x70 && op <= 0x8f) {  // breg0..breg31
        LG_TRY_VOID(reg(off, op - 0x70u));
        if (!c.sleb(s)) return trunc();
        pushes = 1;
      } else {
        switch (op) {
          case 0x03: if (!c.skip(8)) return trunc(); pushes = 1; break;  // addr
          case 0x08: case 0x09: if (!c.skip(1)) return trunc(); pushes = 1; break;
          case 0x0a: case 0x0b: if (!c.skip(2)) return trunc(); pushes = 1; break;
          case 0x0c: case 0x0d: if (!c.skip(4)) return trunc(); pushes = 1; break;
          case 0x0e: case 0x0f: if (!c.skip(8)) return trunc(); pushes = 1; break;
          case 0x10: if (!c.uleb(a)) return trunc(); pushes = 1; break;  // constu
          case 0x11: if (!c.sleb(s)) return trunc(); pushes = 1; break;  // consts
          case 0x12: pops = 1; pushes = 2; break;                         // dup
          case 0x13: pops = 1; break;                                     // drop
          case 0x14: pops = 2; pushes = 3; break;                         // over
          case 0x15: {                                                    // pick
            uint8_t i;
            if (!c.u8(i)) return trunc();
            if (i >= stack) return bad(off, "DW_OP_pick {} at {:#x} reaches below the stack", i, at);
            pushes = 1;
            break;
          }
          case 0x16: pops = 2; pushes = 2; break;  // swap
          case 0x17: pops = 3; pushes = 3; break;  // rot
          case 0x06: case 0x19: case 0x1f: case 0x20: pops = 1; pushes = 1; break;  // deref, abs, neg, not
          case 0x23: if (!c.uleb(a)) return trunc(); pops = 1; pushes = 1; break;  // plus_uconst
          case 0x94: if (!c.skip(1)) return trunc(); pops = 1; pushes = 1; break;  // deref_size
          case 0x1a: case 0x1b: case 0x1c: case 0x1d: case 0x1e: case 0x21: case 0x22: case 0x24: case 0x25:
          case 0x26: case 0x27: case 0x29: case 0x2a: case 0x2b: case 0x2c: case 0x2d: case 0x2e:
            pops = 2; pushes = 1; break;  // binary operations and comparisons
          case 0x92:  // bregx
            if (!c.uleb(a) || !c.sleb(s)) return trunc();
            LG_TRY_VOID(reg(off, a));
            pushes = 1;
            break;
          case 0x96: break;  // nop
          default:
            return bad(off, "DWARF operation {:#04x} at {:#x} is not one the unwinder evaluates in call frame information", op, at);
        }
      }
      if (stack < pops) return bad(off, "DWARF operation {:#04x} at {:#x} pops an empty stack", op, at);
      stack += pushes - pops;
      if (stack > kMaxStack) return bad(off, "DWARF expression at {:#x} needs more than {} stack entries", at, kMaxStack);
    }
    if (stack < 1) return bad(off, "DWARF expression leaves no value on the stack");
    return ok_result();
  }

  std::span<const uint8_t> t_;
  const EhFrameFdeCheck& check_;
  std::string_view label_;
  std::map<uint64_t, Cie> cies_;
  std::map<uint64_t, int> cie_depth_;
};

}  // namespace

Result<EhFrameSummary> check_eh_frame(std::span<const uint8_t> table, const EhFrameFdeCheck& check_fde, std::string_view label) {
  return Checker(table, check_fde, label).run();
}

uint64_t eh_frame_pc_begin(const EhFrameFde& fde, uint64_t table_addr) {
  if ((fde.encoding & 0x70) == 0x10) return table_addr + fde.pc_begin_field + fde.pc_begin_raw;
  return fde.pc_begin_raw;
}

}  // namespace lg::elf
