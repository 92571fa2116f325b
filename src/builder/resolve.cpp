#include "builder/resolve.h"

#include <elf.h>

#include <algorithm>

#include "builder/names.h"
#include "common/hex.h"

namespace lg::builder {

bool is_pc_relative(uint32_t type) {
  switch (type) {
    case R_X86_64_PC32: case R_X86_64_PLT32: case R_X86_64_GOTPCREL: case R_X86_64_GOTPCRELX:
    case R_X86_64_REX_GOTPCRELX: case R_X86_64_TLSGD: case R_X86_64_TLSLD: case R_X86_64_GOTTPOFF:
    case R_X86_64_GOTPC32:
      return true;
    default:
      return false;
  }
}

namespace {

std::string hex_of(const Section& s, uint64_t off, uint64_t len) {
  if (s.data.empty()) return "bss:" + std::to_string(len);
  if (off > s.data.size()) off = s.data.size();
  len = std::min<uint64_t>(len, s.data.size() - off);
  return to_hex(std::span<const uint8_t>(s.data.data() + off, len));
}

std::string string_at(const Section& s, int64_t off) {
  if (off < 0 || static_cast<uint64_t>(off) >= s.data.size()) return "<out of range " + std::to_string(off) + ">";
  std::string out;
  for (size_t i = off; i < s.data.size() && s.data[i]; ++i) out += static_cast<char>(s.data[i]);
  return out;
}

// Content key of the anonymous data at offset `off` of section `s`.
std::string content_key(const Section& s, int64_t off) {
  if (s.is_strings()) return "str:\"" + string_at(s, off) + "\"";
  if (s.is_merge_constants() && s.entsize)
    return "const:" + hex_of(s, off < 0 ? 0 : off, s.entsize);
  // Unnamed data (a jump table): the whole section plus the position in it.
  return "data:" + canonical_name(s.name) + "@" + std::to_string(off) + ":" + hex_of(s, 0, s.size);
}

}  // namespace

bool is_content_keyed(const Object& obj, const Symbol& sym) {
  const Section* s = obj.section_of(sym);
  if (!s || s->is_writable() || s->is_text() || s->is_tls()) return false;
  if (s->is_strings() || s->is_merge_constants()) return true;
  if (!sym.is_local()) return false;
  if (is_anonymous_constant_name(sym.name)) return true;
  // A local read-only object without relocations (a static const table): copying it is
  // exact and keeps no state, so compare it by content.
  return sym.is_object() && s->relocations.empty();
}

std::string compare_name(const Symbol& sym) {
  // Only symbols of the patched object have twins pointing at the original's symbols; a symbol
  // of the original compares under its own name. Both sides use the original's names.
  if (sym.in_patched && sym.twin) return sym.twin->name;
  return sym.name;
}

RelocTarget resolve_target(const Object& obj, const Relocation& rel) {
  RelocTarget t;
  const Symbol& sym = obj.symbols[rel.symbol];
  t.symbol = &sym;
  t.addend = rel.addend;
  int64_t pc_adjust = is_pc_relative(rel.type) ? 4 : 0;
  const Section* sec = obj.section_of(sym);
  if (!sec) return t;  // undefined or absolute: by name

  if (sym.is_section()) {
    int64_t where = rel.addend + pc_adjust;
    if (sec->is_strings() || sec->is_merge_constants()) {
      t.kind = TargetKind::content;
      t.section = sec->index;
      t.key = content_key(*sec, where);
      return t;
    }
    // Replace the section symbol by the function/object symbol covering the address.
    const auto& inside = obj.symbols_in(sec->index);
    const Symbol* best = nullptr;
    for (const Symbol* s : inside) {
      if (s->type != STT_FUNC && s->type != STT_OBJECT && s->type != STT_TLS) continue;
      if (static_cast<int64_t>(s->value) <= where && where < static_cast<int64_t>(s->value + std::max<uint64_t>(s->size, 1)))
        best = s;
    }
    if (!best && inside.size() == 1 && inside[0]->type != STT_NOTYPE) best = inside[0];
    if (!best) {
      t.kind = TargetKind::content;
      t.section = sec->index;
      t.key = content_key(*sec, where);
      return t;
    }
    t.symbol = best;
    t.addend = rel.addend - static_cast<int64_t>(best->value);
  }
  const Symbol& target = *t.symbol;
  const Section& tsec = *obj.section_of(target);
  if (target.type == STT_NOTYPE && (tsec.is_strings() || tsec.is_merge_constants())) {
    // A string label (".LC3 - 4").
    t.kind = TargetKind::content;
    t.section = tsec.index;
    t.key = content_key(tsec, static_cast<int64_t>(target.value) + rel.addend + pc_adjust);
    t.addend = rel.addend;
    return t;
  }
  if (is_content_keyed(obj, target)) {
    t.kind = TargetKind::content;
    t.section = tsec.index;
    t.key = "obj:" + canonical_name(target.name) + ":" + hex_of(tsec, target.value, target.size) + "+" +
            std::to_string(t.addend);
  }
  return t;
}

int64_t offset_in_target(uint32_t type, int64_t addend) {
  return addend + (is_pc_relative(type) && addend == -4 ? 4 : 0);
}

bool is_branch_relocation(const Section& sec, const Relocation& r) {
  if (r.type == R_X86_64_PLT32) return true;
  if (!sec.is_text() || r.type != R_X86_64_PC32 || r.offset < 2 || r.offset > sec.data.size()) return false;
  const uint8_t op = sec.data[r.offset - 1], prefix = sec.data[r.offset - 2];
  return op == 0xe8 || op == 0xe9 || (prefix == 0x0f && op >= 0x80 && op <= 0x8f);  // call, jmp, jcc rel32
}

const Symbol* kept_address_of(const Object& patched, const Section& sec, const Relocation& r,
                              const std::vector<const Symbol*>& functions) {
  if (functions.empty() || is_branch_relocation(sec, r)) return nullptr;
  RelocTarget t = resolve_target(patched, r);
  if (t.kind != TargetKind::symbol || !t.symbol || !t.symbol->defined()) return nullptr;
  if (offset_in_target(r.type, t.addend) != 0) return nullptr;
  for (const Symbol* f : functions)
    if (f == t.symbol || (t.symbol->shndx == f->shndx && t.symbol->value == f->value &&
                          (t.symbol->type == STT_FUNC || t.symbol->type == STT_NOTYPE)))
      return f;
  return nullptr;
}

}  // namespace lg::builder
