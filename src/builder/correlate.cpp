#include "builder/correlate.h"

#include <elf.h>
#include <fmt/format.h>

#include <cxxabi.h>

#include <cstdlib>
#include <map>
#include <memory>
#include <regex>
#include <set>

#include "builder/compare.h"
#include "builder/names.h"
#include "builder/resolve.h"

namespace lg::builder {

bool is_static_local(const Object& obj, const Symbol& sym) {
  if (!sym.defined() || !sym.is_local() || !sym.is_object() || !has_numeric_suffix(sym.name)) return false;
  return !is_content_keyed(obj, sym);
}

namespace {

bool correlatable(const Object& obj, const Symbol& s) {
  if (!s.defined() || s.index == 0 || s.is_section() || s.type == STT_FILE) return false;
  if (!s.is_function() && !s.is_object()) return false;
  if (s.shndx >= SHN_LORESERVE) return false;  // SHN_ABS/SHN_COMMON
  if (is_static_local(obj, s) || is_content_keyed(obj, s)) return false;
  return true;
}

void link(Symbol& a, Symbol& b) {
  a.twin = &b;
  b.twin = &a;
}

void attach_cold_children(Object& obj) {
  std::map<std::string, Symbol*> functions;
  for (Symbol& s : obj.symbols)
    if (s.defined() && s.is_function() && !is_cold_child(s.name)) functions[s.name] = &s;
  for (Symbol& s : obj.symbols) {
    if (!s.defined() || !s.is_function() || !is_cold_child(s.name)) continue;
    auto it = functions.find(cold_parent_name(s.name));
    if (it == functions.end()) continue;
    s.parent = it->second;
    it->second->children.push_back(&s);
  }
}

// A static local that a symbol references, and where: the offset of the (first) relocation
// from the start of the referencing symbol.
struct StaticUse {
  Symbol* local;
  uint64_t at;
};

// The static locals that function or object `f` (and its cold children) references.
std::vector<StaticUse> static_locals_used(Object& obj, const Symbol& f) {
  std::vector<StaticUse> out;
  std::set<size_t> seen;
  auto scan = [&](const Symbol& fn) {
    const Section* sec = obj.section_of(fn);
    if (!sec) return;
    for (const Relocation& r : sec->relocations) {
      if (r.offset < fn.value || r.offset >= fn.value + fn.size) continue;
      RelocTarget t = resolve_target(obj, r);
      if (t.kind != TargetKind::symbol || !t.symbol) continue;
      Symbol& s = obj.symbols[t.symbol->index];
      if (is_static_local(obj, s) && seen.insert(s.index).second) out.push_back({&s, r.offset - fn.value});
    }
  };
  scan(f);
  for (const Symbol* c : f.children) scan(*c);
  return out;
}

void unlink(Symbol& a) {
  if (a.twin) a.twin->twin = nullptr;
  a.twin = nullptr;
}

// A C++ name with the numbers of its lambdas and unnamed types dropped ("make(int,
// bool)::{lambda(int)#}"), or "" when it has none.
std::string lambda_key(const std::string& symbol) {
  if (!symbol.starts_with("_Z")) return {};
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> d(abi::__cxa_demangle(symbol.c_str(), nullptr, nullptr, &status), std::free);
  if (status != 0 || !d) return {};
  std::string s = d.get();
  if (s.find("{lambda(") == std::string::npos && s.find("{unnamed type#") == std::string::npos) return {};
  static const std::regex number(R"(\)#[0-9]+\}|\{unnamed type#[0-9]+\})");
  return std::regex_replace(s, number, "#}");
}

// Lambdas are numbered in their enclosing scope, in source order ({lambda(int)#2}), and so are
// the functions made for them (operator(), std::function's _M_invoke and _M_manager): a fix
// that adds or removes a lambda renumbers the ones after it, and one name then means another
// lambda in each object. Paired by name, the running program's lambda #1 would be replaced by
// the code of another lambda (closures made before the patch, in live std::function objects,
// would run it on their own captures). So where the names of such a group differ between the
// objects, its functions are paired by identical code instead (repeated: one pairing can make
// the next one's relocations meet); the rest of the fixed object's are NEW and the rest of the
// original's keep their code for the closures that already exist, which the builder says.
void correlate_renumbered_lambdas(Object& orig, Object& patched, Diagnostics& diag) {
  std::map<std::string, std::vector<Symbol*>> in_orig, in_patched;
  auto group = [](Object& obj, std::map<std::string, std::vector<Symbol*>>& out) {
    for (Symbol& s : obj.symbols) {
      if (!correlatable(obj, s) || !s.is_function() || s.parent) continue;
      std::string key = lambda_key(s.name);
      if (!key.empty()) out[key].push_back(&s);
    }
  };
  group(orig, in_orig);
  group(patched, in_patched);
  for (auto& [key, ps] : in_patched) {
    auto it = in_orig.find(key);
    if (it == in_orig.end()) continue;
    std::vector<Symbol*>& os = it->second;
    std::set<std::string> names_o, names_p;
    for (Symbol* o : os) names_o.insert(o->name);
    for (Symbol* p : ps) names_p.insert(p->name);
    if (names_o == names_p) continue;  // the same numbers on both sides: the names tell
    auto relink_children = [](Symbol& o, Symbol& p) {
      for (Symbol* c : p.children)
        for (Symbol* d : o.children)
          // (A child is named "<parent>.cold[.N]": attach_cold_children.)
          if (!d->twin && canonical_name(c->name.substr(p.name.size())) == canonical_name(d->name.substr(o.name.size()))) {
            link(*d, *c);
            break;
          }
    };
    for (auto* side : {&ps, &os})
      for (Symbol* s : *side) {
        unlink(*s);
        for (Symbol* c : s->children) unlink(*c);  // re-paired with their parents
      }
    for (bool progress = true; progress;) {
      progress = false;
      for (Symbol* p : ps) {
        if (p->twin) continue;
        // Among identical ones (any would do: same code, same references) the same name first.
        Symbol* match = nullptr;
        for (Symbol* o : os)
          if (!o->twin && (!match || o->name == p->name) && identical_code(orig, *o, patched, *p)) match = o;
        if (!match) continue;
        link(*match, *p);
        relink_children(*match, *p);
        progress = true;
      }
    }
    for (Symbol* o : os)
      if (!o->twin)
        diag.warnings.push_back(fmt::format(
            "{} has no identical counterpart in the fixed object: the fix adds or removes lambdas in its scope, "
            "which renumbers them, so it is not replaced (closures made before the patch keep running its old "
            "code; new ones get the fixed object's)", o->name));
  }
}

}  // namespace

void correlate(Object& orig, Object& patched, Diagnostics& diag) {
  for (Symbol& s : patched.symbols) s.in_patched = true;
  attach_cold_children(orig);
  attach_cold_children(patched);

  // Exact names first.
  std::map<std::string, Symbol*> by_name;
  for (Symbol& s : orig.symbols)
    if (correlatable(orig, s)) by_name.emplace(s.name, &s);
  for (Symbol& s : patched.symbols) {
    if (!correlatable(patched, s)) continue;
    auto it = by_name.find(s.name);
    if (it != by_name.end() && !it->second->twin && it->second->is_function() == s.is_function()) link(*it->second, s);
  }
  // Then canonical names, where unique on both sides among the uncorrelated.
  std::map<std::string, std::vector<Symbol*>> orig_canon, patched_canon;
  for (Symbol& s : orig.symbols)
    if (correlatable(orig, s) && !s.twin) orig_canon[canonical_name(s.name)].push_back(&s);
  for (Symbol& s : patched.symbols)
    if (correlatable(patched, s) && !s.twin) patched_canon[canonical_name(s.name)].push_back(&s);
  for (auto& [name, ps] : patched_canon) {
    auto it = orig_canon.find(name);
    if (it == orig_canon.end()) continue;
    if (ps.size() == 1 && it->second.size() == 1 && ps[0]->is_function() == it->second[0]->is_function()) {
      link(*it->second[0], *ps[0]);
    } else {
      diag.warnings.push_back(fmt::format(
          "{} symbols named like {} in the original and {} in the patched object: not correlated, "
          "treated as new", it->second.size(), name, ps.size()));
    }
  }

  correlate_renumbered_lambdas(orig, patched, diag);

  // Function-scope statics, through the functions that use them; and the other local objects
  // named like them, through the correlated data that points at them: a file-scope compound
  // literal is __compound_literal.N, often referenced only from data (a table, an initcall
  // record), and a static local may point at another one. In a function the first one of the
  // name that is free is taken (code moves); in data, the one at the same place in the object
  // (its bytes must not change anyway). Repeated: a static paired can lead to the next.
  std::map<size_t, std::string> used_by;  // orig static local -> a function that references it
  std::set<size_t> scanned;
  for (bool linked = true; linked;) {
    linked = false;
    for (Symbol& f : orig.symbols) {
      if (!f.defined() || !(f.is_function() || f.is_object()) || !f.twin || f.parent) continue;
      if (!scanned.insert(f.index).second) continue;
      auto mine = static_locals_used(orig, f);
      if (mine.empty()) continue;
      auto theirs = static_locals_used(patched, *f.twin);
      for (const StaticUse& x : mine) {
        if (f.is_function()) used_by.emplace(x.local->index, f.name);
        if (x.local->twin) continue;
        for (const StaticUse& y : theirs) {
          if (y.local->twin || canonical_name(y.local->name) != canonical_name(x.local->name)) continue;
          if (f.is_object() && y.at != x.at) continue;
          link(*x.local, *y.local);
          linked = true;
          break;
        }
      }
    }
  }
  for (auto& [index, fname] : used_by) {
    const Symbol& x = orig.symbols[index];
    if (!x.twin)
      diag.refusals.push_back(fmt::format(
          "reference to static local variable {} in {} was removed: the patched code would lose the "
          "link to the live variable (keep a reference to it in {})", x.name, fname, fname));
  }
  for (Symbol& y : patched.symbols)
    if (is_static_local(patched, y) && !y.twin)
      diag.warnings.push_back(fmt::format("static local {} has no counterpart in the original: assuming it is new", y.name));
}

}  // namespace lg::builder
