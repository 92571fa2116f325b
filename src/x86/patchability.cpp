#include "x86/patchability.h"

#include <Zydis/Zydis.h>

#include <algorithm>

#include "x86/encode.h"

namespace lg::x86 {

namespace {

struct Decoded {
  ZydisDecodedInstruction insn;
  ZydisDecodedOperand operands[ZYDIS_MAX_OPERAND_COUNT];
};

const ZydisDecoder& decoder64() {
  static const ZydisDecoder d = [] {
    ZydisDecoder dec;
    ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
    return dec;
  }();
  return d;
}

std::string format(const Decoded& d, uint64_t addr) {
  ZydisFormatter f;
  if (!ZYAN_SUCCESS(ZydisFormatterInit(&f, ZYDIS_FORMATTER_STYLE_INTEL))) return "(formatter error)";
  char buf[256];
  if (!ZYAN_SUCCESS(ZydisFormatterFormatInstruction(&f, &d.insn, d.operands, d.insn.operand_count_visible, buf,
                                                    sizeof(buf), addr, nullptr)))
    return "(formatter error)";
  return buf;
}

// An instruction after which execution never falls through: what may legitimately be followed
// by padding or data the decoder rejects.
bool ends_flow(const ZydisDecodedInstruction& insn) {
  switch (insn.mnemonic) {
    case ZYDIS_MNEMONIC_RET:
    case ZYDIS_MNEMONIC_JMP:
    case ZYDIS_MNEMONIC_UD2:
      return true;
    default:
      return false;
  }
}

// Alignment padding compilers and linkers put between functions: int3, nop of any length,
// and zero bytes (which decode as add [rax], al).
bool is_padding(std::span<const uint8_t> bytes, const ZydisDecodedInstruction& insn) {
  if (insn.mnemonic == ZYDIS_MNEMONIC_INT3 || insn.mnemonic == ZYDIS_MNEMONIC_NOP) return true;
  return std::all_of(bytes.begin(), bytes.end(), [](uint8_t b) { return b == 0; });
}

}  // namespace

Result<PatchSite> check_patchable(std::span<const uint8_t> code, uint64_t func_addr, const std::string& name) {
  PatchSite site;
  site.func_addr = func_addr;
  const size_t jump_off = jump_offset(code.data(), code.size());
  site.jump_addr = func_addr + jump_off;
  if (code.size() < jump_off + kJmpRel32Size)
    return make_error(ErrorKind::unsupported,
                      "function {} at {:#x} is {} bytes, too short for a {}-byte jump{} (needs at least {})", name,
                      func_addr, code.size(), kJmpRel32Size, jump_off ? " after its endbr64" : "",
                      jump_off + kJmpRel32Size);

  const uint64_t hole_lo = site.jump_addr, hole_hi = site.jump_addr + kJmpRel32Size;
  auto inside_jump = [&](uint64_t target) { return target > hole_lo && target < hole_hi; };

  size_t off = 0;
  bool after_flow_end = false;
  while (off < code.size()) {
    Decoded d;
    const uint64_t ip = func_addr + off;
    ZyanStatus st = ZydisDecoderDecodeFull(&decoder64(), code.data() + off, code.size() - off, &d.insn, d.operands);
    if (!ZYAN_SUCCESS(st)) {
      // Past the displaced bytes and after a ret/jmp, undecodable bytes are padding or data.
      if (after_flow_end && off >= jump_off + site.displaced && site.displaced >= kJmpRel32Size) break;
      bool truncated = st == ZYDIS_STATUS_NO_MORE_DATA;
      return make_error(ErrorKind::unsupported, "function {} at {:#x}: {} at +{:#x} (byte {:#04x}){}", name, func_addr,
                        truncated ? "an instruction runs past the end of the function" : "undecodable instruction",
                        off, code[off], truncated ? "; is the symbol size right?" : "");
    }
    const size_t len = d.insn.length;
    if (off >= jump_off && off < jump_off + kJmpRel32Size) site.displaced += len;

    for (uint8_t i = 0; i < d.insn.operand_count; ++i) {
      const ZydisDecodedOperand& op = d.operands[i];
      bool relative_imm = op.type == ZYDIS_OPERAND_TYPE_IMMEDIATE && op.imm.is_relative;
      bool rip_mem = op.type == ZYDIS_OPERAND_TYPE_MEMORY && op.mem.base == ZYDIS_REGISTER_RIP;
      if (!relative_imm && !rip_mem) continue;
      ZyanU64 target = 0;
      if (!ZYAN_SUCCESS(ZydisCalcAbsoluteAddress(&d.insn, &op, ip, &target))) continue;
      if (!inside_jump(target)) continue;
      return make_error(ErrorKind::unsupported,
                        "function {} at {:#x} cannot be patched: the instruction at +{:#x} ({}) {} +{:#x}, inside the "
                        "{} bytes the jump at +{:#x} overwrites",
                        name, func_addr, off, format(d, ip), relative_imm ? "branches to" : "takes the address",
                        target - func_addr, kJmpRel32Size, jump_off);
    }
    after_flow_end = ends_flow(d.insn) || (after_flow_end && is_padding(code.subspan(off, len), d.insn));
    off += len;
  }
  if (site.displaced < kJmpRel32Size)
    return make_error(ErrorKind::unsupported, "function {} at {:#x}: only {} bytes of instructions after +{:#x}", name,
                      func_addr, site.displaced, jump_off);
  return site;
}

std::string disassemble_one(std::span<const uint8_t> code, uint64_t addr) {
  Decoded d;
  if (!ZYAN_SUCCESS(ZydisDecoderDecodeFull(&decoder64(), code.data(), code.size(), &d.insn, d.operands)))
    return "(bad)";
  return format(d, addr);
}

}  // namespace lg::x86
