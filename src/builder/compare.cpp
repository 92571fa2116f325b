#include "builder/compare.h"

#include <elf.h>
#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <span>

#include "builder/correlate.h"
#include "builder/line_change.h"
#include "builder/resolve.h"

namespace lg::builder {

namespace {

struct Range {
  std::span<const uint8_t> bytes;  // empty for NOBITS
  uint64_t size = 0;
  std::vector<const Relocation*> relocations;
};

Range range_of(const Object& obj, const Symbol& sym) {
  Range r;
  const Section* sec = obj.section_of(sym);
  if (!sec) return r;
  r.size = sym.size;
  if (!sec->data.empty() && sym.value + sym.size <= sec->data.size())
    r.bytes = std::span<const uint8_t>(sec->data.data() + sym.value, sym.size);
  for (const Relocation& rel : sec->relocations)
    if (rel.offset >= sym.value && rel.offset < sym.value + std::max<uint64_t>(sym.size, 1)) r.relocations.push_back(&rel);
  std::sort(r.relocations.begin(), r.relocations.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
  return r;
}

bool same_target(const Object& o, const Relocation& a, const Object& p, const Relocation& b) {
  RelocTarget x = resolve_target(o, a), y = resolve_target(p, b);
  if (x.kind != y.kind) return false;
  if (x.kind == TargetKind::content) return x.key == y.key;
  return compare_name(*x.symbol) == compare_name(*y.symbol) && x.addend == y.addend;
}

// Compares relocations; fills `callees` (rel32 offset -> callee name) for the __LINE__ check.
bool same_relocations(const Object& o, const Symbol& f, const Range& a, const Object& p, const Symbol& g,
                      const Range& b, std::map<uint64_t, std::string>& callees) {
  if (a.relocations.size() != b.relocations.size()) return false;
  for (size_t i = 0; i < a.relocations.size(); ++i) {
    const Relocation& x = *a.relocations[i];
    const Relocation& y = *b.relocations[i];
    if (x.offset - f.value != y.offset - g.value || x.type != y.type || !same_target(o, x, p, y)) return false;
    if (x.type == R_X86_64_PLT32 || x.type == R_X86_64_PC32) {
      RelocTarget t = resolve_target(o, x);
      if (t.kind == TargetKind::symbol) callees[x.offset - f.value] = t.symbol->name;
    }
  }
  return true;
}

}  // namespace

bool identical_code(const Object& orig, const Symbol& f, const Object& patched, const Symbol& g) {
  Range a = range_of(orig, f), b = range_of(patched, g);
  if (a.size != b.size || !std::equal(a.bytes.begin(), a.bytes.end(), b.bytes.begin(), b.bytes.end())) return false;
  if (a.relocations.size() != b.relocations.size()) return false;
  for (size_t i = 0; i < a.relocations.size(); ++i) {
    const Relocation& x = *a.relocations[i];
    const Relocation& y = *b.relocations[i];
    if (x.offset - f.value != y.offset - g.value || x.type != y.type) return false;
    RelocTarget s = resolve_target(orig, x), t = resolve_target(patched, y);
    if (s.kind != t.kind) return false;
    if (s.kind == TargetKind::content) {
      if (s.key != t.key) return false;
    } else if (s.symbol->parent == &f && t.symbol->parent == &g) {
      // Its own .cold part (only jumped to from here): the same when its code is.
      if (s.addend != t.addend || !identical_code(orig, *s.symbol, patched, *t.symbol)) return false;
    } else if (compare_name(*s.symbol) != compare_name(*t.symbol) || s.addend != t.addend) {
      return false;
    }
  }
  return true;
}

void compare(Object& orig, Object& patched, Diagnostics& diag) {
  for (Symbol& g : patched.symbols) {
    if (!g.defined() || g.index == 0 || g.is_section() || g.type == STT_FILE) continue;
    if (!g.is_function() && !g.is_object()) continue;
    if (!g.twin) {
      g.status = Status::added;
      if (g.type == STT_TLS && !is_content_keyed(patched, g))
        diag.refusals.push_back(fmt::format(
            "new thread-local variable {}: the loader cannot add thread-local storage to a running process", g.name));
      continue;
    }
    Symbol& f = *g.twin;
    Range a = range_of(orig, f), b = range_of(patched, g);
    std::map<uint64_t, std::string> callees;
    bool relocs_same = same_relocations(orig, f, a, patched, g, b, callees);
    bool bytes_same = a.size == b.size && std::equal(a.bytes.begin(), a.bytes.end(), b.bytes.begin(), b.bytes.end());
    if (g.is_function()) {
      if (relocs_same && bytes_same) {
        g.status = Status::same;
      } else if (relocs_same && a.size == b.size && differs_only_in_line_numbers(a.bytes, b.bytes, callees)) {
        g.status = Status::same;
        g.line_only = true;
      } else {
        g.status = Status::changed;
      }
      f.status = g.status;
      continue;
    }
    // Existing data.
    if (a.size != b.size) {
      diag.refusals.push_back(fmt::format(
          "size of existing data {} changed from {} to {} bytes: its layout cannot change in a running "
          "process (add a new variable or use a shadow variable)", f.name, a.size, b.size));
    } else if (!relocs_same || !bytes_same) {
      diag.refusals.push_back(fmt::format(
          "initial value of existing data {} changed: the running process has its own live value; "
          "change it from code (a callback) instead", f.name));
    }
    g.status = f.status = Status::same;
  }
  // A changed or new `.cold` child makes its parent CHANGED (the parent jumps into it).
  for (Symbol& g : patched.symbols) {
    if (!g.parent || g.status == Status::same) continue;
    if (g.parent->status == Status::same) g.parent->status = Status::changed;
    g.parent->line_only = false;
  }
}

}  // namespace lg::builder
