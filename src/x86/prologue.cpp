#include "x86/prologue.h"

#include <Zydis/Zydis.h>

#include "x86/encode.h"

namespace lg::x86 {

namespace {

const ZydisDecoder& decoder() {
  static const ZydisDecoder d = [] {
    ZydisDecoder dec;
    ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
    return dec;
  }();
  return d;
}

std::string text_of(const ZydisDecodedInstruction& insn, const ZydisDecodedOperand* ops, uint64_t ip) {
  ZydisFormatter f;
  char buf[256];
  if (!ZYAN_SUCCESS(ZydisFormatterInit(&f, ZYDIS_FORMATTER_STYLE_INTEL)) ||
      !ZYAN_SUCCESS(ZydisFormatterFormatInstruction(&f, &insn, ops, insn.operand_count_visible, buf, sizeof buf, ip, nullptr)))
    return "?";
  return buf;
}

void put_rel32(ContinuationTemplate& t, uint8_t op0, int op1, uint64_t target) {
  t.bytes.push_back(op0);
  if (op1 >= 0) t.bytes.push_back(static_cast<uint8_t>(op1));
  uint32_t off = static_cast<uint32_t>(t.bytes.size());
  t.bytes.insert(t.bytes.end(), 4, 0);
  t.fixups.push_back({off, off + 4, target});
}

}  // namespace

Result<ContinuationTemplate> relocate_prologue(std::span<const uint8_t> code, uint64_t jump_addr, const std::string& name) {
  ContinuationTemplate t;
  size_t off = 0;
  while (off < kJmpRel32Size) {
    ZydisDecodedInstruction insn;
    ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
    const uint64_t ip = jump_addr + off;
    if (!ZYAN_SUCCESS(ZydisDecoderDecodeFull(&decoder(), code.data() + off, code.size() - off, &insn, ops)))
      return make_error(ErrorKind::unsupported, "function {}: the instruction at {:#x} does not decode; its entry cannot be relocated", name, ip);
    const std::string what = text_of(insn, ops, ip);
    const uint8_t* raw = code.data() + off;
    bool relative = (insn.attributes & ZYDIS_ATTRIB_IS_RELATIVE) != 0;
    if (!relative) {
      t.bytes.insert(t.bytes.end(), raw, raw + insn.length);
    } else if (insn.meta.category == ZYDIS_CATEGORY_UNCOND_BR && insn.raw.imm[0].is_relative) {
      uint64_t target = ip + insn.length + static_cast<uint64_t>(insn.raw.imm[0].value.s);
      put_rel32(t, 0xe9, -1, target);
    } else if (insn.meta.category == ZYDIS_CATEGORY_COND_BR && insn.raw.imm[0].is_relative &&
               insn.mnemonic != ZYDIS_MNEMONIC_JRCXZ && insn.mnemonic != ZYDIS_MNEMONIC_JECXZ &&
               insn.mnemonic != ZYDIS_MNEMONIC_JCXZ && insn.mnemonic != ZYDIS_MNEMONIC_LOOP &&
               insn.mnemonic != ZYDIS_MNEMONIC_LOOPE && insn.mnemonic != ZYDIS_MNEMONIC_LOOPNE) {
      uint64_t target = ip + insn.length + static_cast<uint64_t>(insn.raw.imm[0].value.s);
      // The condition code is the low nibble of the opcode in both forms (7x rel8, 0f 8x rel32).
      uint8_t cc = static_cast<uint8_t>(insn.opcode & 0x0f);
      put_rel32(t, 0x0f, 0x80 | cc, target);
    } else if (insn.meta.category == ZYDIS_CATEGORY_CALL && insn.raw.imm[0].is_relative) {
      uint64_t target = ip + insn.length + static_cast<uint64_t>(insn.raw.imm[0].value.s);
      put_rel32(t, 0xe8, -1, target);
    } else {
      // A RIP-relative memory operand (disp32 at raw.disp.offset) in any other instruction.
      bool rip_mem = false;
      for (uint8_t i = 0; i < insn.operand_count; ++i)
        if (ops[i].type == ZYDIS_OPERAND_TYPE_MEMORY && ops[i].mem.base == ZYDIS_REGISTER_RIP) rip_mem = true;
      if (!rip_mem || insn.raw.disp.size != 32)
        return make_error(ErrorKind::unsupported,
                          "function {}: the entry instruction at {:#x} ({}) has a relative operand that cannot be relocated", name, ip, what);
      uint64_t target = ip + insn.length + static_cast<uint64_t>(insn.raw.disp.value);
      uint32_t base = static_cast<uint32_t>(t.bytes.size());
      t.bytes.insert(t.bytes.end(), raw, raw + insn.length);
      t.fixups.push_back({base + insn.raw.disp.offset, base + insn.length, target});
    }
    off += insn.length;
  }
  t.displaced = static_cast<uint32_t>(off);
  t.resume = jump_addr + off;
  put_rel32(t, 0xe9, -1, t.resume);
  return t;
}

}  // namespace lg::x86
