// A structure validator for .eh_frame (LSB 5.0 §10.6 "Exception Frames", DWARF 4 §6.4), run on
// a patch's .eh_frame before it touches a process (controller) and before it is handed to the
// host's unwinder (agent). libgcc's unwinder trusts what __register_frame gives it: a bad length
// makes it walk off the table, an unknown CFA opcode or pointer encoding reaches
// gcc_unreachable()/abort(), a DW_CFA_restore_state without a remember dereferences NULL. All of
// that would happen at the host's next throw, long after "applied". So every record is checked:
//  - lengths: 0 ends the table; 0xffffffff (64-bit DWARF) is refused; a record must fit in what
//    is left and be long enough for its fixed fields;
//  - CIE: version 1, 3 or 4 (4: address size 8, segment size 0); augmentation "" or "z..." made
//    of R, P, L, S only; code/data alignment and return-address column (< 17, the columns the
//    x86-64 unwinder has); augmentation data inside its declared length; pointer encodings
//    libgcc can decode (the FDE encoding of fixed size, absolute or PC-relative);
//  - FDE: its CIE pointer names an earlier CIE of this table; pc_begin and pc_range inside the
//    record; the caller checks [pc_begin, pc_begin + pc_range) is patch code;
//  - call frame instructions of CIEs and FDEs: known opcodes, operands inside the record,
//    registers < 17, restore_state only after remember_state, DWARF expressions made of the
//    operations libgcc evaluates, with a stack that never underflows or passes 64 entries.
// Header-only dependencies (libc, Result): the agent uses it too.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string_view>

#include "common/result.h"

namespace lg::elf {

struct EhFrameFde {
  uint64_t offset = 0;          // of the record (its length word), within the table
  uint64_t pc_begin_field = 0;  // offset of the pc_begin field within the table
  uint8_t encoding = 0;         // DW_EH_PE_* of pc_begin (pcrel or absptr, fixed size)
  uint64_t pc_begin_raw = 0;    // the field's value (sign-extended for signed encodings)
  uint64_t pc_range = 0;
};

// Called for every FDE: fails when the FDE does not describe patch code.
using EhFrameFdeCheck = std::function<Result<void>(const EhFrameFde&)>;

struct EhFrameSummary {
  size_t cies = 0, fdes = 0;
  uint64_t end = 0;  // offset of the terminator, or the table's size when it has none
};

// Checks [table]. Errors: bad_patch (malformed), unsupported (64-bit records); messages start
// with [label] and give the record's offset.
Result<EhFrameSummary> check_eh_frame(std::span<const uint8_t> table, const EhFrameFdeCheck& check_fde, std::string_view label);

// The address a pc_begin field denotes when the table is at [table_addr] in memory.
uint64_t eh_frame_pc_begin(const EhFrameFde& fde, uint64_t table_addr);

}  // namespace lg::elf
