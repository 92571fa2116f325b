#include "builder/line_change.h"

#include <Zydis/Zydis.h>

#include <algorithm>
#include <cctype>
#include <optional>
#include <vector>

namespace lg::builder {

bool line_number_callee(const std::string& name) {
  std::string lower;
  for (char c : name) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  static const char* const words[] = {"assert", "warn", "log",   "error", "print", "panic",
                                      "fail",   "die",  "trace", "report", "debug", "abort"};
  if (lower == "err" || lower == "errx" || lower == "verr" || lower == "verrx") return true;
  for (const char* w : words)
    if (lower.find(w) != std::string::npos) return true;
  return false;
}

namespace {

bool is_argument_register(ZydisRegister r) {
  switch (r) {
    case ZYDIS_REGISTER_EDI: case ZYDIS_REGISTER_RDI: case ZYDIS_REGISTER_ESI: case ZYDIS_REGISTER_RSI:
    case ZYDIS_REGISTER_EDX: case ZYDIS_REGISTER_RDX: case ZYDIS_REGISTER_ECX: case ZYDIS_REGISTER_RCX:
    case ZYDIS_REGISTER_R8D: case ZYDIS_REGISTER_R8: case ZYDIS_REGISTER_R9D: case ZYDIS_REGISTER_R9:
      return true;
    default:
      return false;
  }
}

struct Decoded {
  uint64_t offset = 0;
  ZydisDecodedInstruction insn{};
  ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT]{};
};

std::optional<std::vector<Decoded>> decode_all(std::span<const uint8_t> code) {
  ZydisDecoder dec;
  ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
  std::vector<Decoded> out;
  uint64_t off = 0;
  while (off < code.size()) {
    Decoded d;
    d.offset = off;
    if (!ZYAN_SUCCESS(ZydisDecoderDecodeFull(&dec, code.data() + off, code.size() - off, &d.insn, d.ops)))
      return std::nullopt;
    off += d.insn.length;
    out.push_back(d);
  }
  return out;
}

}  // namespace

bool differs_only_in_line_numbers(std::span<const uint8_t> orig, std::span<const uint8_t> patched,
                                  const std::map<uint64_t, std::string>& callees) {
  if (orig.size() != patched.size()) return false;
  auto a = decode_all(orig), b = decode_all(patched);
  if (!a || !b || a->size() != b->size()) return false;
  std::optional<int64_t> delta;
  bool any = false;
  for (size_t i = 0; i < a->size(); ++i) {
    const Decoded& x = (*a)[i];
    const Decoded& y = (*b)[i];
    if (x.offset != y.offset || x.insn.length != y.insn.length) return false;
    if (std::equal(orig.begin() + x.offset, orig.begin() + x.offset + x.insn.length, patched.begin() + y.offset))
      continue;
    if (x.insn.mnemonic != ZYDIS_MNEMONIC_MOV || y.insn.mnemonic != ZYDIS_MNEMONIC_MOV) return false;
    if (x.insn.operand_count_visible != 2 || x.ops[0].type != ZYDIS_OPERAND_TYPE_REGISTER ||
        x.ops[1].type != ZYDIS_OPERAND_TYPE_IMMEDIATE || y.ops[0].type != ZYDIS_OPERAND_TYPE_REGISTER ||
        y.ops[1].type != ZYDIS_OPERAND_TYPE_IMMEDIATE || x.ops[0].reg.value != y.ops[0].reg.value ||
        !is_argument_register(x.ops[0].reg.value))
      return false;
    // Only the immediate's bytes may differ.
    uint8_t imm_off = x.insn.raw.imm[0].offset, imm_size = x.insn.raw.imm[0].size / 8;
    for (uint8_t k = 0; k < x.insn.length; ++k) {
      if (k >= imm_off && k < imm_off + imm_size) continue;
      if (orig[x.offset + k] != patched[y.offset + k]) return false;
    }
    int64_t d = static_cast<int64_t>(y.ops[1].imm.value.s) - static_cast<int64_t>(x.ops[1].imm.value.s);
    if (d == 0 || (delta && *delta != d)) return false;
    delta = d;
    // A call to a line-taking function must follow.
    bool found = false;
    for (size_t j = i + 1; j < a->size() && j <= i + 12 && !found; ++j) {
      const Decoded& c = (*a)[j];
      if (c.insn.mnemonic != ZYDIS_MNEMONIC_CALL && c.insn.mnemonic != ZYDIS_MNEMONIC_JMP) continue;
      auto it = callees.find(c.offset + c.insn.length - 4);
      if (it != callees.end() && line_number_callee(it->second)) found = true;
    }
    if (!found) return false;
    any = true;
  }
  return any;
}

}  // namespace lg::builder
