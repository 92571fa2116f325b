#include "builder/explain.h"

#include <cxxabi.h>
#include <dwarf.h>
#include <elf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <memory>
#include <set>

#include "builder/dwfl_offline.h"
#include "builder/resolve.h"

namespace lg::builder {

// Per function (by symbol name): the names of the functions inlined into it, nested ones too.
struct InlineInfo {
  std::map<std::string, std::set<std::string>> by_function;
};

namespace {

std::string base_symbol(const std::string& s) {
  size_t dot = s.find('.', 1);
  return dot == std::string::npos ? s : s.substr(0, dot);
}

std::string inlined_name(Dwarf_Die* die) {
  Dwarf_Attribute a;
  Dwarf_Die origin;
  Dwarf_Die* named = die;
  if (dwarf_attr(die, DW_AT_abstract_origin, &a) && dwarf_formref_die(&a, &origin)) named = &origin;
  for (int attr : {DW_AT_linkage_name, DW_AT_MIPS_linkage_name})
    if (dwarf_attr_integrate(named, attr, &a))
      if (const char* s = dwarf_formstring(&a)) return s;
  const char* n = dwarf_diename(named);
  return n ? n : "";
}

void collect_inlined(Dwarf_Die* scope, std::set<std::string>& out, int depth = 0) {
  if (depth > 64) return;
  Dwarf_Die child;
  if (dwarf_child(scope, &child) != 0) return;
  do {
    int tag = dwarf_tag(&child);
    if (tag == DW_TAG_inlined_subroutine) {
      std::string n = inlined_name(&child);
      if (!n.empty()) out.insert(readable_name(n));
      collect_inlined(&child, out, depth + 1);
    } else if (tag == DW_TAG_lexical_block || tag == DW_TAG_try_block || tag == DW_TAG_catch_block) {
      collect_inlined(&child, out, depth + 1);
    }
  } while (dwarf_siblingof(&child, &child) == 0);
}

// The concrete (code-bearing) subprograms that start at one of `wanted` (address -> symbol
// name): what each inlines. Only those are collected (a unit's DWARF holds every function's).
void walk(Dwarf_Die* die, Dwarf_Addr bias, const std::map<Dwarf_Addr, std::vector<std::string>>& wanted,
          InlineInfo& out, int depth = 0) {
  if (depth > 32) return;
  Dwarf_Die child;
  if (dwarf_child(die, &child) != 0) return;
  do {
    int tag = dwarf_tag(&child);
    if (tag == DW_TAG_subprogram) {
      Dwarf_Addr base = 0, start = 0, end = 0;
      ptrdiff_t off = 0;
      while ((off = dwarf_ranges(&child, off, &base, &start, &end)) > 0) {
        auto it = wanted.find(start + bias);
        if (it == wanted.end()) continue;
        std::set<std::string> inlined;
        collect_inlined(&child, inlined);
        for (const std::string& name : it->second) out.by_function[name] = inlined;
      }
    } else if (tag == DW_TAG_namespace || tag == DW_TAG_structure_type || tag == DW_TAG_class_type ||
               tag == DW_TAG_union_type) {
      walk(&child, bias, wanted, out, depth + 1);
    }
  } while (dwarf_siblingof(&child, &child) == 0);
}

// libdwfl's offline mode lays the relocatable object's sections out and applies the debug
// sections' relocations; the symbol table is read through the same layout, so a function's
// symbol address and its subprogram's low pc meet.
std::unique_ptr<InlineInfo> read_inlines(const std::string& path, const std::set<std::string>& functions) {
  auto off = open_offline(path);
  Dwfl_Module* mod = off.module;
  if (!mod) return nullptr;
  Dwarf_Addr bias = 0;
  if (!dwfl_module_getdwarf(mod, &bias)) return nullptr;
  std::map<Dwarf_Addr, std::vector<std::string>> wanted;
  int n = dwfl_module_getsymtab(mod);
  for (int i = 1; i < n; ++i) {
    GElf_Sym sym;
    GElf_Addr addr = 0;
    GElf_Word shndx = 0;
    Elf* elf = nullptr;
    Dwarf_Addr sym_bias = 0;
    const char* name = dwfl_module_getsym_info(mod, i, &sym, &addr, &shndx, &elf, &sym_bias);
    if (name && GELF_ST_TYPE(sym.st_info) == STT_FUNC && shndx != SHN_UNDEF && functions.contains(name))
      wanted[addr].push_back(name);
  }
  if (wanted.empty()) return nullptr;
  auto info = std::make_unique<InlineInfo>();
  Dwarf_Die* cu = nullptr;
  while ((cu = dwfl_module_nextcu(mod, cu, &bias))) walk(cu, bias, wanted, *info);
  if (info->by_function.empty()) return nullptr;
  return info;
}

const std::set<std::string>* inlines_of(const InlineInfo* info, const std::string& name) {
  if (!info) return nullptr;
  auto it = info->by_function.find(name);
  return it == info->by_function.end() ? nullptr : &it->second;
}

// What a function calls or jumps to (rel32 relocations against functions), by readable name
// (so a call of a C1 constructor and an inlined C4 meet, and clones meet their origin), with
// how often.
std::map<std::string, int> callees(const Object& obj, const Symbol& fn) {
  std::map<std::string, int> out;
  auto scan = [&](const Symbol& f) {
    const Section* sec = obj.section_of(f);
    if (!sec) return;
    for (const Relocation& r : sec->relocations) {
      if (r.offset < f.value || r.offset >= f.value + f.size) continue;
      if (r.type != R_X86_64_PLT32 && r.type != R_X86_64_PC32) continue;
      RelocTarget t = resolve_target(obj, r);
      if (t.kind != TargetKind::symbol || !t.symbol) continue;
      const Symbol& s = *t.symbol;
      if (s.defined() ? !s.is_function() : s.type != STT_NOTYPE && s.type != STT_FUNC) continue;
      if (s.parent == &f) continue;  // the function's own .cold part
      // A NEW function may carry an original's name (a renumbered lambda's): say it is new.
      ++out[readable_name(compare_name(s)) + (s.in_patched && s.defined() && !s.twin ? " (new)" : "")];
    }
  };
  scan(fn);
  for (const Symbol* c : fn.children) scan(*c);
  return out;
}

std::string list(const std::vector<std::string>& names, size_t max = 4) {
  std::string s;
  for (size_t i = 0; i < names.size() && i < max; ++i) {
    // A template's full name can run to kilobytes: enough of it to recognise.
    std::string n = names[i].size() > 160 ? names[i].substr(0, 157) + "..." : names[i];
    s += (i ? ", " : "") + n;
  }
  if (names.size() > max) s += fmt::format(" and {} more", names.size() - max);
  return s;
}

}  // namespace

std::string readable_name(const std::string& symbol) {
  std::string base = base_symbol(symbol);
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> d(abi::__cxa_demangle(base.c_str(), nullptr, nullptr, &status), std::free);
  if (status != 0 || !d) return base;
  std::string s = d.get();
  for (bool again = true; again;) {
    again = false;
    for (const char* q : {" const", " volatile", " &&", " &"})
      if (s.ends_with(q)) {
        s.resize(s.size() - std::string_view(q).size());
        again = true;
      }
  }
  if (!s.ends_with(')')) return s;
  int depth = 0;
  for (size_t i = s.size(); i-- > 0;) {
    if (s[i] == ')') ++depth;
    else if (s[i] == '(' && --depth == 0) return s.substr(0, i);
  }
  return s;
}

Explainer::Explainer(const Object& orig, const Object& patched) : orig_(orig), patched_(patched) {
  std::set<std::string> mine, theirs;
  for (const Symbol& g : patched.symbols)
    if (g.twin && g.is_function() && g.status == Status::changed) {
      theirs.insert(g.name);
      mine.insert(g.twin->name);
      changed_.insert(readable_name(g.name));
    }
  if (theirs.empty()) return;
  auto a = read_inlines(orig.path, mine);
  auto b = a ? read_inlines(patched.path, theirs) : nullptr;
  if (a && b) {
    orig_inlines_ = std::move(a);
    patched_inlines_ = std::move(b);
  }
}

Explainer::~Explainer() = default;

std::vector<std::string> Explainer::reasons(const Symbol& g) const {
  std::vector<std::string> out;
  if (!g.twin) return out;
  const Symbol& f = *g.twin;
  std::map<std::string, int> before = callees(orig_, f), after = callees(patched_, g);

  const std::set<std::string>* in_before = inlines_of(orig_inlines_.get(), f.name);
  const std::set<std::string>* in_after = inlines_of(patched_inlines_.get(), g.name);
  const bool dwarf = in_before && in_after;
  auto inlined_before = [&](const std::string& n) { return dwarf && in_before->contains(n); };
  auto inlined_after = [&](const std::string& n) { return dwarf && in_after->contains(n); };
  std::vector<std::string> inlined_was_called, inlined_new, no_longer_inlined, out_of_line_now, new_calls, gone_calls,
      recounted;
  std::set<std::string> explained;  // (readable) names the inlining evidence already accounts for
  if (dwarf) {
    for (const std::string& n : *in_after) {
      if (in_before->contains(n)) continue;
      (before.contains(n) && !after.contains(n) ? inlined_was_called : inlined_new).push_back(n);
      explained.insert(n);
    }
    for (const std::string& n : *in_before) {
      if (in_after->contains(n)) continue;
      no_longer_inlined.push_back(n);
      explained.insert(n);
    }
  }
  for (const auto& [n, k] : after) {
    auto it = before.find(n);
    if (it != before.end()) {
      if (it->second != k) recounted.push_back(fmt::format("{} {} times (the original {})", n, k, it->second));
    } else if (!explained.contains(n)) {
      (inlined_before(n) ? out_of_line_now : new_calls).push_back(n);
    }
  }
  for (const auto& [n, k] : before)
    if (!after.contains(n) && !explained.contains(n)) (inlined_after(n) ? inlined_was_called : gone_calls).push_back(n);
  // Inlined functions whose own out-of-line copy changed too.
  std::vector<std::string> changed;
  const std::string self = readable_name(g.name);
  if (dwarf)
    for (const std::string& n : changed_)
      if (n != self && in_after->contains(n)) changed.push_back(n);
  bool cold_changed = false;
  for (const Symbol* c : g.children) cold_changed |= c->status != Status::same;

  if (!changed.empty()) out.push_back(fmt::format("inlines {}, which changed", list(changed)));
  if (!inlined_was_called.empty())
    out.push_back(fmt::format("inlines {} where the original calls it", list(inlined_was_called)));
  if (!out_of_line_now.empty())
    out.push_back(fmt::format("calls {} where the original inlines it", list(out_of_line_now)));
  if (!new_calls.empty()) out.push_back(fmt::format("calls {}, which the original does not", list(new_calls)));
  if (!gone_calls.empty()) out.push_back(fmt::format("no longer calls {}", list(gone_calls)));
  if (!inlined_new.empty()) out.push_back(fmt::format("inlines {}, which the original does not", list(inlined_new)));
  if (!no_longer_inlined.empty()) out.push_back(fmt::format("no longer inlines {}", list(no_longer_inlined)));
  if (!recounted.empty()) out.push_back(fmt::format("calls {}", list(recounted)));
  if (cold_changed) out.push_back("has a .cold part that changed or is new");
  if (out.empty()) {
    // Same callees, same inlining: its own code differs.
    const Section* a = orig_.section_of(f);
    const Section* b = patched_.section_of(g);
    uint64_t first = std::min(f.size, g.size);
    if (a && b && f.value + f.size <= a->data.size() && g.value + g.size <= b->data.size())
      for (uint64_t i = 0; i < first; ++i)
        if (a->data[f.value + i] != b->data[g.value + i]) {
          first = i;
          break;
        }
    std::string what = first < std::min(f.size, g.size) ? fmt::format("differs in its own code from +{:#x}", first)
                                                       : std::string("differs in its relocations");
    out.push_back(f.size == g.size ? what : fmt::format("{} ({} -> {} bytes)", what, f.size, g.size));
  } else if (f.size != g.size) {
    out.push_back(fmt::format("{} from {} to {} bytes", g.size > f.size ? "grew" : "shrank", f.size, g.size));
  }
  return out;
}

}  // namespace lg::builder
