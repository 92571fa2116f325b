#include "x86/data_reference.h"

#include <Zydis/Zydis.h>

#include <algorithm>
#include <climits>
#include <optional>

#include <fmt/format.h>

namespace lg::x86 {

namespace {

ZydisRegister gpr64(ZydisRegister r) {
  return r == ZYDIS_REGISTER_NONE ? r : ZydisRegisterGetLargestEnclosing(ZYDIS_MACHINE_MODE_LONG_64, r);
}

// The instruction re-encoded with its RIP-relative operand as disp(%scratch): Zydis' encoder,
// from the decoded form. A register the instruction does not use at all is the scratch.
std::optional<DataRef> generic_ref(const ZydisDecodedInstruction& insn, const ZydisDecodedOperand* ops, uint64_t at,
                                   uint64_t field, int64_t addend, std::string& why) {
  if (insn.meta.category == ZYDIS_CATEGORY_CALL || insn.meta.category == ZYDIS_CATEGORY_UNCOND_BR ||
      insn.meta.category == ZYDIS_CATEGORY_COND_BR || insn.meta.category == ZYDIS_CATEGORY_RET)
    return std::nullopt;  // a branch through far data: the thunk's stack adjustment would leak
  int mem = -1;
  uint32_t used = 0;
  auto note = [&](ZydisRegister r) {
    r = gpr64(r);
    if (r >= ZYDIS_REGISTER_RAX && r <= ZYDIS_REGISTER_R15) used |= 1u << (r - ZYDIS_REGISTER_RAX);
  };
  for (unsigned i = 0; i < insn.operand_count; ++i) {
    const auto& op = ops[i];
    if (op.type == ZYDIS_OPERAND_TYPE_REGISTER) {
      if (gpr64(op.reg.value) == ZYDIS_REGISTER_RSP) return std::nullopt;
      note(op.reg.value);
    } else if (op.type == ZYDIS_OPERAND_TYPE_MEMORY) {
      if (op.mem.base == ZYDIS_REGISTER_RIP) {
        if (mem >= 0 || i >= insn.operand_count_visible) return std::nullopt;
        mem = static_cast<int>(i);
        continue;
      }
      if (gpr64(op.mem.base) == ZYDIS_REGISTER_RSP || gpr64(op.mem.index) == ZYDIS_REGISTER_RSP) return std::nullopt;
      note(op.mem.base);
      note(op.mem.index);
    }
  }
  if (mem < 0) return std::nullopt;
  static const int order[] = {11, 10, 0, 1, 2, 6, 7, 8, 9};  // r11 r10 rax rcx rdx rsi rdi r8 r9
  int scratch = -1;
  for (int r : order)
    if (!(used & (1u << r))) {
      scratch = r;
      break;
    }
  if (scratch < 0) return std::nullopt;

  ZydisEncoderRequest req;
  if (!ZYAN_SUCCESS(ZydisEncoderDecodedInstructionToEncoderRequest(&insn, ops, insn.operand_count_visible, &req))) {
    why += " (not re-encodable)";
    return std::nullopt;
  }
  int64_t disp = addend + static_cast<int64_t>(at + insn.length - field);  // the effective address is sym + disp
  if (disp < INT32_MIN || disp > INT32_MAX) return std::nullopt;
  auto& m = req.operands[mem].mem;
  m.base = static_cast<ZydisRegister>(ZYDIS_REGISTER_RAX + scratch);
  m.index = ZYDIS_REGISTER_NONE;
  m.scale = 0;
  m.displacement = disp;
  uint8_t buf[ZYDIS_MAX_INSTRUCTION_LENGTH];
  ZyanUSize len = sizeof buf;
  if (!ZYAN_SUCCESS(ZydisEncoderEncodeInstruction(&req, buf, &len))) {
    why += " (not re-encodable)";
    return std::nullopt;
  }
  DataRef r;
  r.offset = field;
  r.insn = at;
  r.len = insn.length;
  r.kind = DataRefKind::generic;
  r.body.assign(buf, buf + len);
  r.scratch = static_cast<uint8_t>(scratch);
  return r;
}

}  // namespace

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
    if (insn.raw.disp.size != 32 || field != at + insn.raw.disp.offset) return std::nullopt;  // not its displacement
    if (insn.length < 5) return std::nullopt;
    bool plain = !(insn.attributes & (ZYDIS_ATTRIB_HAS_OPERANDSIZE | ZYDIS_ATTRIB_HAS_SEGMENT | ZYDIS_ATTRIB_HAS_LOCK |
                                      ZYDIS_ATTRIB_HAS_REP | ZYDIS_ATTRIB_HAS_REPNE)) &&
                 field == at + insn.length - 4 && insn.operand_count_visible == 2 &&
                 ops[0].type == ZYDIS_OPERAND_TYPE_REGISTER && ops[1].type == ZYDIS_OPERAND_TYPE_MEMORY &&
                 ops[1].mem.base == ZYDIS_REGISTER_RIP && ops[0].reg.value != ZYDIS_REGISTER_RSP &&
                 ops[0].reg.value != ZYDIS_REGISTER_ESP && addend + 4 >= INT32_MIN && addend + 4 <= INT32_MAX &&
                 insn.encoding == ZYDIS_INSTRUCTION_ENCODING_LEGACY;
    ZydisRegisterClass c = plain ? ZydisRegisterGetClass(ops[0].reg.value) : ZYDIS_REGCLASS_INVALID;
    DataRef r;
    r.offset = field;
    r.insn = at;
    r.len = insn.length;
    if (plain && insn.mnemonic == ZYDIS_MNEMONIC_LEA && c == ZYDIS_REGCLASS_GPR64 && insn.opcode == 0x8d) {
      r.kind = DataRefKind::lea;
    } else if (plain && insn.mnemonic == ZYDIS_MNEMONIC_MOV && insn.opcode == 0x8b &&
               (c == ZYDIS_REGCLASS_GPR64 || c == ZYDIS_REGCLASS_GPR32)) {
      r.kind = DataRefKind::load;
    } else {
      auto g = generic_ref(insn, ops, at, field, addend, why);
      if (!g) return std::nullopt;
      r = std::move(*g);
    }
    why.clear();
    return r;
  }
  why = fmt::format("no instruction found at offset {:#x}", field);
  return std::nullopt;
}

}  // namespace lg::x86
