#include "builder/type_layout.h"

#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>

#include <algorithm>
#include <map>
#include <memory>

#include <fmt/format.h>

#include "builder/dwfl_offline.h"

namespace lg::builder {

namespace {

struct Member {
  std::string name, type;
  uint64_t offset = 0, size = 0;
  bool operator==(const Member&) const = default;
};
struct Layout {
  uint64_t size = 0;
  std::vector<Member> members;
};
struct UnitTypes {
  std::map<std::string, Layout> layouts;                      // by type name
  std::map<std::string, std::set<std::string>> users;         // type name -> functions using it
};

const char* kind_of(int tag) {
  return tag == DW_TAG_union_type ? "union" : tag == DW_TAG_class_type ? "class" : "struct";
}

// The name a struct/union is known by: its tag name, or the typedef that names it.
std::string aggregate_name(Dwarf_Die* die, const std::string& typedef_name = {}) {
  const char* n = dwarf_diename(die);
  if (n) return fmt::format("{} {}", kind_of(dwarf_tag(die)), n);
  return typedef_name;
}

// A type's name for messages (base types, pointers, typedefs; aggregates by name).
std::string type_name(Dwarf_Die* die, int depth = 0) {
  if (!die || depth > 8) return "?";
  int tag = dwarf_tag(die);
  Dwarf_Attribute a;
  Dwarf_Die inner;
  bool has_inner = dwarf_attr_integrate(die, DW_AT_type, &a) && dwarf_formref_die(&a, &inner);
  switch (tag) {
    case DW_TAG_pointer_type: return (has_inner ? type_name(&inner, depth + 1) : std::string("void")) + "*";
    case DW_TAG_const_type: return "const " + (has_inner ? type_name(&inner, depth + 1) : std::string("void"));
    case DW_TAG_volatile_type: return "volatile " + (has_inner ? type_name(&inner, depth + 1) : std::string("void"));
    case DW_TAG_array_type: return (has_inner ? type_name(&inner, depth + 1) : std::string("?")) + "[]";
    case DW_TAG_structure_type:
    case DW_TAG_union_type:
    case DW_TAG_class_type: {
      std::string n = aggregate_name(die);
      return n.empty() ? std::string(kind_of(tag)) + " <anonymous>" : n;
    }
    default: {
      const char* n = dwarf_diename(die);
      return n ? n : "?";
    }
  }
}

// The aggregate a variable's type reaches through pointers, qualifiers, typedefs and arrays.
std::string used_aggregate(Dwarf_Die* type) {
  Dwarf_Die cur = *type;
  std::string typedef_name;
  for (int i = 0; i < 16; ++i) {
    int tag = dwarf_tag(&cur);
    if (tag == DW_TAG_structure_type || tag == DW_TAG_union_type || tag == DW_TAG_class_type)
      return aggregate_name(&cur, typedef_name);
    if (tag == DW_TAG_typedef)
      if (const char* n = dwarf_diename(&cur)) typedef_name = n;
    Dwarf_Attribute a;
    Dwarf_Die next;
    if (!dwarf_attr_integrate(&cur, DW_AT_type, &a) || !dwarf_formref_die(&a, &next)) return {};
    cur = next;
  }
  return {};
}

void collect_layout(Dwarf_Die* die, const std::string& name, UnitTypes& out) {
  if (name.empty() || out.layouts.contains(name) || dwarf_hasattr(die, DW_AT_declaration)) return;
  Layout l;
  Dwarf_Word size = 0;
  if (dwarf_aggregate_size(die, &size) == 0) l.size = size;
  Dwarf_Die child;
  if (dwarf_child(die, &child) == 0) {
    do {
      if (dwarf_tag(&child) != DW_TAG_member) continue;
      Member m;
      const char* n = dwarf_diename(&child);
      m.name = n ? n : "<anonymous>";
      Dwarf_Attribute a;
      Dwarf_Word off = 0;
      if (dwarf_attr(&child, DW_AT_data_member_location, &a) && dwarf_formudata(&a, &off) == 0) m.offset = off;
      else if (dwarf_attr(&child, DW_AT_data_bit_offset, &a) && dwarf_formudata(&a, &off) == 0) m.offset = off / 8;
      Dwarf_Die t;
      if (dwarf_attr_integrate(&child, DW_AT_type, &a) && dwarf_formref_die(&a, &t)) {
        m.type = type_name(&t);
        Dwarf_Word s = 0;
        if (dwarf_aggregate_size(&t, &s) == 0) m.size = s;
      }
      if (dwarf_attr(&child, DW_AT_bit_size, &a)) m.type += ":bits";
      l.members.push_back(std::move(m));
    } while (dwarf_siblingof(&child, &child) == 0);
  }
  out.layouts.emplace(name, std::move(l));
}

// The aggregates a function's parameters and locals use (lexical blocks and inlined code too).
void collect_uses(Dwarf_Die* scope, std::set<std::string>& types, int depth = 0) {
  if (depth > 32) return;
  Dwarf_Die child;
  if (dwarf_child(scope, &child) != 0) return;
  do {
    int tag = dwarf_tag(&child);
    if (tag == DW_TAG_formal_parameter || tag == DW_TAG_variable) {
      Dwarf_Attribute a;
      Dwarf_Die t;
      if (dwarf_attr_integrate(&child, DW_AT_type, &a) && dwarf_formref_die(&a, &t)) {
        std::string n = used_aggregate(&t);
        if (!n.empty()) types.insert(n);
      }
    } else if (tag == DW_TAG_lexical_block || tag == DW_TAG_inlined_subroutine) {
      collect_uses(&child, types, depth + 1);
    }
  } while (dwarf_siblingof(&child, &child) == 0);
}

void walk(Dwarf_Die* die, UnitTypes& out, int depth = 0) {
  if (depth > 64) return;
  Dwarf_Die child;
  if (dwarf_child(die, &child) != 0) return;
  do {
    int tag = dwarf_tag(&child);
    if (tag == DW_TAG_structure_type || tag == DW_TAG_union_type || tag == DW_TAG_class_type) {
      collect_layout(&child, aggregate_name(&child), out);
      walk(&child, out, depth + 1);  // C++ nested types
    } else if (tag == DW_TAG_typedef) {
      Dwarf_Attribute a;
      Dwarf_Die t;
      const char* n = dwarf_diename(&child);
      if (n && dwarf_attr(&child, DW_AT_type, &a) && dwarf_formref_die(&a, &t) && !dwarf_diename(&t)) {
        int tt = dwarf_tag(&t);
        if (tt == DW_TAG_structure_type || tt == DW_TAG_union_type) collect_layout(&t, n, out);
      }
    } else if (tag == DW_TAG_subprogram) {
      const char* n = dwarf_diename(&child);
      if (n && !dwarf_hasattr(&child, DW_AT_declaration)) {
        std::set<std::string> types;
        collect_uses(&child, types);
        for (const std::string& t : types) out.users[t].insert(n);
      }
    } else if (tag == DW_TAG_namespace) {
      walk(&child, out, depth + 1);
    }
  } while (dwarf_siblingof(&child, &child) == 0);
}

// libdwfl's offline mode applies the relocations of a relocatable object's debug sections.
Result<UnitTypes> read_unit_types(const std::string& path) {
  auto off = open_offline(path);
  if (!off.dwfl) return make_error(ErrorKind::internal, "dwfl_begin: {}", dwfl_errmsg(-1));
  Dwfl_Module* mod = off.module;
  if (!mod) return make_error(ErrorKind::io, "{}: {}", path, dwfl_errmsg(-1));
  Dwarf_Addr bias = 0;
  Dwarf* dw = dwfl_module_getdwarf(mod, &bias);
  if (!dw) return make_error(ErrorKind::not_found, "{} has no DWARF (built without -g): {}", path, dwfl_errmsg(-1));
  UnitTypes out;
  Dwarf_Die* cu = nullptr;
  while ((cu = dwfl_module_nextcu(mod, cu, &bias))) walk(cu, out);
  return out;
}

std::string member_text(const Member& m) {
  return fmt::format("{} {} at {} ({} bytes)", m.type, m.name, m.offset, m.size);
}

}  // namespace

Result<std::vector<TypeLayoutChange>> compare_type_layouts(const std::string& orig_object, const std::string& patched_object,
                                                           const std::set<std::string>& patched_functions) {
  auto a = read_unit_types(orig_object);
  if (!a) return std::move(a).error();
  auto b = read_unit_types(patched_object);
  if (!b) return std::move(b).error();
  std::vector<TypeLayoutChange> out;
  for (const auto& [name, old] : a->layouts) {
    auto it = b->layouts.find(name);
    if (it == b->layouts.end()) continue;
    const Layout& now = it->second;
    if (old.size == now.size && old.members == now.members) continue;
    TypeLayoutChange c;
    c.type = name;
    c.old_size = old.size;
    c.new_size = now.size;
    for (const Member& m : old.members) {
      auto same = std::find_if(now.members.begin(), now.members.end(), [&](const Member& x) { return x.name == m.name; });
      if (same == now.members.end()) c.members.push_back("- " + member_text(m));
      else if (!(*same == m)) c.members.push_back(member_text(m) + " -> " + member_text(*same));
    }
    for (const Member& m : now.members)
      if (std::none_of(old.members.begin(), old.members.end(), [&](const Member& x) { return x.name == m.name; }))
        c.members.push_back("+ " + member_text(m));
    if (auto u = b->users.find(name); u != b->users.end())
      for (const std::string& f : u->second) (patched_functions.contains(f) ? c.patched_users : c.other_users).push_back(f);
    out.push_back(std::move(c));
  }
  return out;
}

std::string describe(const TypeLayoutChange& c) {
  std::string s = fmt::format("the fix changes the layout of {} ({} -> {} bytes):", c.type, c.old_size, c.new_size);
  size_t shown = 0;
  for (const std::string& m : c.members) {
    if (++shown > 8) {
      s += fmt::format(" ... ({} more);", c.members.size() - 8);
      break;
    }
    s += " " + m + ";";
  }
  auto list = [](const std::vector<std::string>& v) {
    std::string r;
    for (size_t i = 0; i < v.size() && i < 10; ++i) r += (i ? ", " : "") + v[i];
    if (v.size() > 10) r += fmt::format(" and {} more", v.size() - 10);
    return r;
  };
  if (!c.patched_users.empty()) s += " used by the patched " + list(c.patched_users) + ";";
  if (!c.other_users.empty()) s += " also used by unpatched " + list(c.other_users) + ";";
  s += " objects of the old layout alive during the switch would be misread by the new code (and new-layout objects "
       "by old code still running): safe only if none outlive a call of the patched functions; otherwise keep the "
       "layout and put new fields in shadow variables, or convert the data in a hook";
  return s;
}

}  // namespace lg::builder
