#include "x86/data_reference.h"

#include <Zydis/Zydis.h>

#include <algorithm>

#include <fmt/format.h>

namespace lg::x86 {

std::optional<DataRef> classify_data_reference(std::span<const uint8_t> section, const std::vector<uint64_t>& starts,
                                               uint64_t field, int64_t addend, std::string& why) {
  ZydisDecoder dec;
  ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
  // Decode from the closest instruction start at or before the field (a function's entry).
  uint64_t from = 0;
  for (uint64_t s : starts)
    if (s <= field && s > from) from = s;
  ZydisDecodedInstruction insn;
  ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
  for (uint64_t at = from; at < section.size() && at <= field;) {
    if (!ZYAN_SUCCESS(ZydisDecoderDecodeFull(&dec, section.data() + at, section.size() - at, &insn, ops))) {
      why = fmt::format("undecodable bytes at offset {:#x}", at);
      return std::nullopt;
    }
    if (field >= at + insn.length) {
      at += insn.length;
      continue;
    }
    const char* mnemonic = ZydisMnemonicGetString(insn.mnemonic);
    why = fmt::format("a `{}` instruction", mnemonic ? mnemonic : "?");
    if (field != at + insn.length - 4) return std::nullopt;  // an immediate follows the field
    if (insn.attributes & (ZYDIS_ATTRIB_HAS_OPERANDSIZE | ZYDIS_ATTRIB_HAS_SEGMENT | ZYDIS_ATTRIB_HAS_LOCK |
                           ZYDIS_ATTRIB_HAS_REP | ZYDIS_ATTRIB_HAS_REPNE))
      return std::nullopt;
    if (insn.operand_count_visible != 2 || ops[0].type != ZYDIS_OPERAND_TYPE_REGISTER ||
        ops[1].type != ZYDIS_OPERAND_TYPE_MEMORY || ops[1].mem.base != ZYDIS_REGISTER_RIP)
      return std::nullopt;
    ZydisRegisterClass c = ZydisRegisterGetClass(ops[0].reg.value);
    DataRef r;
    r.offset = field;
    r.insn = at;
    r.len = insn.length;
    if (insn.mnemonic == ZYDIS_MNEMONIC_LEA && c == ZYDIS_REGCLASS_GPR64 && insn.opcode == 0x8d) {
      r.kind = DataRefKind::lea;
    } else if (insn.mnemonic == ZYDIS_MNEMONIC_MOV && insn.opcode == 0x8b &&
               (c == ZYDIS_REGCLASS_GPR64 || c == ZYDIS_REGCLASS_GPR32)) {
      r.kind = DataRefKind::load;
    } else {
      return std::nullopt;
    }
    if (ops[0].reg.value == ZYDIS_REGISTER_RSP || ops[0].reg.value == ZYDIS_REGISTER_ESP) return std::nullopt;
    if (addend + 4 < INT32_MIN || addend + 4 > INT32_MAX) return std::nullopt;
    why.clear();
    return r;
  }
  why = fmt::format("no instruction found at offset {:#x}", field);
  return std::nullopt;
}

}  // namespace lg::x86
