#include "builder/verify.h"

#include <Zydis/Zydis.h>
#include <elf.h>

#include <algorithm>
#include <map>
#include <span>
#include <vector>

namespace lg::builder {

namespace {

bool is_got_reloc(uint32_t type) {
  return type == R_X86_64_GOTPCRELX || type == R_X86_64_REX_GOTPCRELX || type == R_X86_64_GOTPCREL;
}

// One function's instructions, padding (NOPs) left out; `index_at` maps the offset of every
// instruction, padding included, to the index of the first real instruction at or after it (a
// branch to an aligned loop head may land on the padding before it in one encoding only).
struct Stream {
  struct Insn {
    uint64_t off = 0;
    ZydisDecodedInstruction insn{};
    ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT]{};
  };
  std::vector<Insn> insns;
  std::map<uint64_t, size_t> index_at;
};

bool decode(std::span<const uint8_t> code, Stream& s) {
  ZydisDecoder dec;
  ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
  std::vector<uint64_t> padding;
  for (uint64_t off = 0; off < code.size();) {
    Stream::Insn i;
    i.off = off;
    if (!ZYAN_SUCCESS(ZydisDecoderDecodeFull(&dec, code.data() + off, code.size() - off, &i.insn, i.ops))) return false;
    off += i.insn.length;
    if (i.insn.mnemonic == ZYDIS_MNEMONIC_NOP) {
      padding.push_back(i.off);
      continue;
    }
    for (uint64_t p : padding) s.index_at[p] = s.insns.size();
    padding.clear();
    s.index_at[i.off] = s.insns.size();
    s.insns.push_back(i);
  }
  for (uint64_t p : padding) s.index_at[p] = s.insns.size();
  s.index_at[code.size()] = s.insns.size();
  return true;
}

// The target of a relative operand (a branch's immediate, a RIP-relative memory operand) as an
// instruction index of its own function, or -1 outside it.
long relative_target(const Stream& s, const Stream::Insn& i, const ZydisDecodedOperand& op, uint64_t size) {
  ZyanU64 to = 0;
  if (!ZYAN_SUCCESS(ZydisCalcAbsoluteAddress(&i.insn, &op, i.off, &to)) || to > size) return -1;
  auto it = s.index_at.find(to);
  return it == s.index_at.end() ? -2 : static_cast<long>(it->second);
}

bool is_relative(const ZydisDecodedOperand& op) {
  return (op.type == ZYDIS_OPERAND_TYPE_IMMEDIATE && op.imm.is_relative) ||
         (op.type == ZYDIS_OPERAND_TYPE_MEMORY && op.mem.base == ZYDIS_REGISTER_RIP);
}

// The same function assembled with its neighbours in one .text (the project's build) or in a
// section of its own (-ffunction-sections, the builder's): GNU as relaxes a branch to its short
// form or keeps the long one depending on where the function's alignment padding fell while it
// was relaxing the whole section (memcached's proxy_process_command: a `jmp` back 128 bytes is
// `eb 80` alone and `e9 7d ff ff ff` in the project's object, and the NOPs after it differ). The
// code is the same: instruction by instruction, NOPs aside, with the same bytes where no
// relocation applies, a branch of either size to the same instruction, a relocated operand
// anything. Returns false at the first other difference.
bool same_code_but_relaxation(std::span<const uint8_t> target_code, std::span<const uint8_t> mine,
                              const std::vector<std::pair<uint64_t, uint32_t>>& relocs) {
  Stream t, m;
  if (!decode(target_code, t) || !decode(mine, m) || t.insns.size() != m.insns.size()) return false;
  for (size_t k = 0; k < m.insns.size(); ++k) {
    const Stream::Insn& a = t.insns[k];
    const Stream::Insn& b = m.insns[k];
    if (a.insn.mnemonic != b.insn.mnemonic || a.insn.operand_count_visible != b.insn.operand_count_visible) return false;
    const uint64_t end = b.off + b.insn.length;
    bool got = false;
    std::vector<bool> relocated(b.insn.length, false);
    for (auto it = std::lower_bound(relocs.begin(), relocs.end(), std::make_pair(b.off, 0u));
         it != relocs.end() && it->first < end; ++it) {
      got = got || is_got_reloc(it->second);
      const uint64_t width = (it->second == R_X86_64_64 || it->second == R_X86_64_PC64) ? 8 : 4;
      for (uint64_t x = it->first; x < it->first + width && x < end; ++x) relocated[x - b.off] = true;
    }
    if (got) {  // the linker may rewrite a GOT load (mov -> lea, call *got -> addr32 call)
      if (a.insn.length != b.insn.length) return false;
      continue;
    }
    bool branch = false;
    for (uint8_t o = 0; o < b.insn.operand_count_visible; ++o) {
      if (!is_relative(b.ops[o])) continue;
      const ZydisDecodedOperand& op = b.ops[o];
      const uint64_t at = op.type == ZYDIS_OPERAND_TYPE_IMMEDIATE ? b.insn.raw.imm[0].offset : b.insn.raw.disp.offset;
      if (at < b.insn.length && relocated[at]) {  // to another section: the relocation says where
        // (a jump the project's assembler could make short, to a function in the same .text)
        branch = branch || op.type == ZYDIS_OPERAND_TYPE_IMMEDIATE;
        continue;
      }
      const long to_mine = relative_target(m, b, op, mine.size());
      const long to_target = relative_target(t, a, a.ops[o], target_code.size());
      if (to_mine < 0 || to_mine != to_target) return false;
      branch = branch || op.type == ZYDIS_OPERAND_TYPE_IMMEDIATE;
      if (op.type == ZYDIS_OPERAND_TYPE_MEMORY)
        for (uint64_t x = at; x < at + 4 && x < b.insn.length; ++x) relocated[x] = true;
    }
    if (branch) continue;  // a short or a long form: same mnemonic, same destination
    if (a.insn.length != b.insn.length) return false;
    for (uint64_t x = 0; x < b.insn.length; ++x)
      if (!relocated[x] && target_code[a.off + x] != mine[b.off + x]) return false;
  }
  return true;
}

}  // namespace

Result<void> verify_function(const Object& orig, const Symbol& f, const TargetBinary& target,
                             const TargetSymbol& in_target) {
  const Section* sec = orig.section_of(f);
  if (!sec || sec->data.size() < f.value + f.size) {
    if (in_target.size != f.size)
      return make_error(ErrorKind::mismatch, "{} is {} bytes in {} but {} bytes in the rebuilt original: {}", f.name,
                        in_target.size, target.path, f.size, kTargetBuiltDifferently);
    return ok_result();
  }
  LG_TRY(auto code, target.read(in_target.value, in_target.size));
  const uint8_t* mine = sec->data.data() + f.value;
  std::vector<std::pair<uint64_t, uint32_t>> relocs;  // (offset in the function, type), sorted
  for (const Relocation& r : sec->relocations)
    if (r.offset >= f.value && r.offset < f.value + f.size) relocs.emplace_back(r.offset - f.value, r.type);
  std::sort(relocs.begin(), relocs.end());
  const auto relaxed = [&] {
    return same_code_but_relaxation(code, std::span<const uint8_t>(mine, f.size), relocs);
  };
  if (in_target.size != f.size) {
    if (relaxed()) return ok_result();
    return make_error(ErrorKind::mismatch,
                      "{} is {} bytes in {} but {} bytes in the rebuilt original: {}", f.name, in_target.size,
                      target.path, f.size, kTargetBuiltDifferently);
  }
  std::vector<bool> skip(f.size, false);
  for (const auto& [at, type] : relocs) {
    uint64_t width = (type == R_X86_64_64 || type == R_X86_64_PC64) ? 8 : 4;
    uint64_t from = at;
    // The linker may rewrite the instruction around a GOT load (mov -> lea, call *got -> addr32
    // call) or a call through the PLT: mask the opcode and prefix bytes too.
    if (is_got_reloc(type)) from = at >= 3 ? at - 3 : 0;
    for (uint64_t k = from; k < at + width && k < f.size; ++k) skip[k] = true;
  }
  for (uint64_t k = 0; k < f.size; ++k) {
    if (skip[k] || mine[k] == code[k]) continue;
    if (relaxed()) return ok_result();
    return make_error(ErrorKind::mismatch,
                      "{} in {} differs from the rebuilt original at offset {:#x} (target {:#04x}, rebuilt {:#04x}): {}",
                      f.name, target.path, k, code[k], mine[k], kTargetBuiltDifferently);
  }
  return ok_result();
}

}  // namespace lg::builder
