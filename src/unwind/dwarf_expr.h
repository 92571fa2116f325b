// DWARF expression evaluation for CFI rules (CFA and register rules) over the registers of one
// frame and the target's memory. Only the operations that x86-64 CFI actually uses are
// supported; anything else is an ErrorKind::unsupported error, so the unwinder can call the
// frame unexplained instead of guessing.
#pragma once

#include <elfutils/libdw.h>
#include <sys/user.h>

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "common/remote.h"
#include "common/result.h"

namespace lg {

// DWARF register numbers of the x86-64 psABI (figure 3.36): 0 rax, 1 rdx, 2 rcx, 3 rbx, 4 rsi,
// 5 rdi, 6 rbp, 7 rsp, 8-15 r8-r15, 16 the return address (rip).
enum class DwarfReg : int { rax = 0, rdx, rcx, rbx, rsi, rdi, rbp, rsp, r8, r9, r10, r11, r12, r13, r14, r15, rip };
inline constexpr int kDwarfRegCount = 17;
inline constexpr int reg_index(DwarfReg r) { return static_cast<int>(r); }
const char* dwarf_reg_name(int regno);

// The registers of one frame; a register whose value the CFI could not recover is unknown.
class RegisterSet {
 public:
  static RegisterSet from_user_regs(const user_regs_struct& regs);

  bool has(int regno) const { return regno >= 0 && regno < kDwarfRegCount && (known_ >> regno) & 1U; }
  // Precondition: has(regno).
  uint64_t get(int regno) const { return value_[static_cast<size_t>(regno)]; }
  void set(int regno, uint64_t v) {
    value_[static_cast<size_t>(regno)] = v;
    known_ |= 1U << regno;
  }
  void forget(int regno) { known_ &= ~(1U << regno); }

  bool has(DwarfReg r) const { return has(reg_index(r)); }
  uint64_t get(DwarfReg r) const { return get(reg_index(r)); }
  void set(DwarfReg r, uint64_t v) { set(reg_index(r), v); }

 private:
  std::array<uint64_t, kDwarfRegCount> value_{};
  uint32_t known_ = 0;
};

// Reads the target's memory. Errors: ErrorKind::io for an unreadable address,
// ErrorKind::thread_died when the process is gone.
class MemoryReader {
 public:
  virtual ~MemoryReader() = default;
  virtual Result<uint64_t> read_u64(RemoteAddr addr) = 0;
  // Reads exactly [out.size()] bytes.
  virtual Result<void> read(RemoteAddr addr, std::span<uint8_t> out) = 0;
};

// What an expression designates. CFI register rules are location descriptions: the register's
// saved value is in memory at an address, is a computed value (DW_OP_stack_value), or is in
// another register (DW_OP_regN alone).
struct ExprResult {
  enum class Kind { memory, value, reg };
  Kind kind = Kind::value;
  uint64_t value = 0;  // the address (memory), the value (value), the register number (reg)
};

// Evaluates [ops]. [cfa] is what DW_OP_call_frame_cfa pushes (nullopt while computing the CFA
// itself). Errors: an unsupported op, an unknown register, a malformed expression (stack
// underflow, bad branch) are ErrorKind::unsupported; memory errors come from [mem].
Result<ExprResult> evaluate_dwarf_expr(std::span<const Dwarf_Op> ops, const RegisterSet& regs,
                                       std::optional<uint64_t> cfa, MemoryReader& mem);

// The CFA from the ops of dwarf_frame_cfa (an expression whose value is the CFA).
Result<uint64_t> evaluate_cfa_rule(std::span<const Dwarf_Op> ops, const RegisterSet& regs, MemoryReader& mem);

// A caller register's value from the ops of dwarf_frame_register (nops > 0): reads memory for a
// location, takes a register's value for a register location.
Result<uint64_t> evaluate_register_rule(std::span<const Dwarf_Op> ops, const RegisterSet& regs, uint64_t cfa,
                                        MemoryReader& mem);

// Decodes raw DWARF expression bytes (as in DW_CFA_def_cfa_expression) into libdw's Dwarf_Op
// form, for the operations evaluate_dwarf_expr supports. Used by tests and diagnostics.
Result<std::vector<Dwarf_Op>> decode_dwarf_expr(std::span<const uint8_t> bytes);

}  // namespace lg
