#include "builder/include.h"

#include <elf.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <deque>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "builder/resolve.h"
#include "x86/relocations.h"

namespace lg::builder {

// The builder refuses what the loader would refuse: the one list, src/x86/relocations.h.
bool loader_supports(uint32_t type) { return x86::classify_relocation(type) == x86::RelocClass::supported; }

std::string relocation_type_name(uint32_t type) { return x86::relocation_name(type); }

namespace {

bool is_tls_relocation(uint32_t type) { return x86::classify_relocation(type) == x86::RelocClass::tls; }

class Includer {
 public:
  Includer(Object& patched, Diagnostics& diag) : obj_(patched), diag_(diag) {}

  void add_section(size_t index) {
    // (SHN_COMMON, SHN_ABS...: no section to copy; include() refuses a new common symbol.)
    if (index == 0 || index >= obj_.sections.size() || !sections_.insert(index).second) return;
    queue_.push_back(index);
  }

  void run(Inclusion& out) {
    while (!queue_.empty()) {
      size_t index = queue_.front();
      queue_.pop_front();
      Section& sec = obj_.sections[index];
      for (Symbol& s : obj_.symbols) {
        if (s.shndx != index || s.is_section() || s.index == 0) continue;
        s.included = true;
        for (Symbol* child : s.children) add_section(child->shndx);
      }
      for (const Relocation& r : sec.relocations) follow(sec, r, out);
    }
    out.sections.assign(sections_.begin(), sections_.end());
  }

  void follow(const Section& context, const Relocation& r, Inclusion& out) { follow_(context, r, out); }

 private:
  std::string user_of(const Section& sec, uint64_t offset) const {
    for (const Symbol& s : obj_.symbols)
      if (s.shndx == sec.index && (s.is_function() || s.is_object()) && offset >= s.value && offset < s.value + std::max<uint64_t>(s.size, 1))
        return s.name;
    return sec.name;
  }

  void follow_(const Section& sec, const Relocation& r, Inclusion& out) {
    const Symbol& raw = obj_.symbols[r.symbol];
    if (is_tls_relocation(r.type) || raw.type == STT_TLS) {
      refuse_tls(user_of(sec, r.offset), raw.name, relocation_type_name(r.type));
      return;
    }
    if (!loader_supports(r.type)) {
      diag_.refusals.push_back(fmt::format("{} uses {} against {}, which the agent's loader does not apply",
                                           user_of(sec, r.offset), relocation_type_name(r.type), raw.name));
      return;
    }
    RelocTarget t = resolve_target(obj_, r);
    if (t.kind == TargetKind::content) {
      add_section(t.section);
      return;
    }
    const Symbol& s = *t.symbol;
    if (!s.defined()) {
      note_external(s.name, STT_NOTYPE, false, user_of(sec, r.offset), out);
      return;
    }
    if (s.shndx >= SHN_LORESERVE) {
      diag_.refusals.push_back(fmt::format("{} references {} in a special section index ({:#x})",
                                           user_of(sec, r.offset), s.name, s.shndx));
      return;
    }
    bool copy = s.status != Status::same || s.parent != nullptr || !s.twin || s.is_section();
    if (s.is_section() || (!s.is_function() && !s.is_object())) {
      // A label inside some section (not a function or object): copy the section it is in.
      copy = true;
    }
    if (copy) {
      add_section(s.shndx);
      return;
    }
    const Symbol& original = *s.twin;
    note_external(original.name, original.type, original.is_local(), user_of(sec, r.offset), out);
  }

  // One refusal per user and thread-local variable, however many relocations (each access of
  // the variable has its own: haproxy's _do_poll named each of its five variables twice).
  void refuse_tls(const std::string& user, const std::string& variable, const std::string& type) {
    auto [it, first] = tls_refusals_.try_emplace({user, variable}, TlsRefusal{diag_.refusals.size(), {}});
    TlsRefusal& t = it->second;
    if (std::find(t.types.begin(), t.types.end(), type) != t.types.end()) return;
    t.types.push_back(type);
    std::string line = fmt::format("{} references thread-local variable {} ({}): patch code cannot access "
                                   "thread-local storage in v1",
                                   user, variable, fmt::join(t.types, ", "));
    if (first) diag_.refusals.push_back(std::move(line));
    else diag_.refusals[t.refusal] = std::move(line);
  }

  void note_external(const std::string& name, uint8_t type, bool local, const std::string& user, Inclusion& out) {
    auto [it, inserted] = out.externals.emplace(name, ExternalRef{name, type, local, user});
    if (!inserted && local) it->second.local_in_original = true;
  }

  struct TlsRefusal {
    size_t refusal;                  // its index in diag_.refusals
    std::vector<std::string> types;  // the relocation types seen, in order
  };

  Object& obj_;
  Diagnostics& diag_;
  std::map<std::pair<std::string, std::string>, TlsRefusal> tls_refusals_;  // by user and variable
  std::set<size_t> sections_;
  std::deque<size_t> queue_;
};

}  // namespace

Inclusion include(Object& orig, Object& patched, Diagnostics& diag) {
  (void)orig;
  Inclusion out;
  Includer inc(patched, diag);
  // Two names for one code: GCC's `f.localalias` (a local alias of a global function, for calls
  // that must not be interposed) is `f`; a C++ complete-object constructor or destructor (C1, D1)
  // is an alias of the base-object one (C2, D2) when they are the same code. The alias is
  // replaced and copied with the function it names (the one not `.localalias`, else the first
  // in the symbol table), never on its own: both names are one address in the target too.
  auto alias_of_another = [&](const Symbol& a) {
    const bool a_local = a.name.ends_with(".localalias");
    for (const Symbol& b : patched.symbols) {
      if (&b == &a || !b.is_function() || b.shndx != a.shndx || b.value != a.value || !b.defined()) continue;
      const bool b_local = b.name.ends_with(".localalias");
      if (a_local != b_local ? a_local : b.index < a.index) return true;
    }
    return false;
  };
  for (Symbol& s : patched.symbols) {
    if (!s.defined() || s.index == 0 || s.parent) continue;
    if (s.is_function() && alias_of_another(s)) continue;
    if (s.is_function() && s.status == Status::changed) {
      if (s.type == STT_GNU_IFUNC) {
        diag.refusals.push_back(fmt::format("{} is an IFUNC resolver: not supported", s.name));
        continue;
      }
      out.replaced.push_back(&s);
      inc.add_section(s.shndx);
    } else if (s.is_function() && s.status == Status::added) {
      out.added_functions.push_back(&s);
      inc.add_section(s.shndx);
    } else if (s.is_object() && s.status == Status::added && !s.is_local()) {
      if (s.shndx == SHN_COMMON) {
        diag.refusals.push_back(fmt::format("new variable {} is a common symbol (SHN_COMMON): the patch has no "
                                            "storage for it; compile with -fno-common", s.name));
        continue;
      }
      inc.add_section(s.shndx);  // a new global variable, whether used yet or not
    }
  }
  // Sharing a section with other functions means the object lacks -ffunction-sections: copying
  // the section would also copy (and shadow) the functions around the changed one.
  for (const Symbol* f : out.replaced) {
    size_t n = 0;
    for (const Symbol& s : patched.symbols)
      if (s.shndx == f->shndx && s.is_function() && !alias_of_another(s)) ++n;
    if (n > 1)
      diag.refusals.push_back(fmt::format(
          "{} shares section {} with {} other functions: compile with -ffunction-sections -fdata-sections",
          f->name, patched.sections[f->shndx].name, n - 1));
  }
  inc.run(out);
  // Unwind info of the copied code, and what it needs (C++ LSDAs, the personality routine).
  std::set<size_t> text;
  for (size_t i : out.sections)
    if (patched.sections[i].is_text()) text.insert(i);
  auto eh = eh_frame_subset(patched, text);
  if (!eh.ok()) {
    diag.refusals.push_back(eh.error().message);
  } else {
    out.eh_frame = std::move(eh.value());
    const Section* eh_section = nullptr;
    for (const Section& sec : patched.sections)
      if (sec.name == ".eh_frame") eh_section = &sec;
    for (const Relocation& r : out.eh_frame.relocations) inc.follow(*eh_section, r, out);
    inc.run(out);
  }
  for (const Symbol& s : patched.symbols)
    if (s.included && s.is_object() && s.status == Status::added && !is_content_keyed(patched, s))
      out.added_data.push_back(&s);
  return out;
}

}  // namespace lg::builder
