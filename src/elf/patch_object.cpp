#include "elf/patch_object.h"

#include <elf.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <map>
#include <set>

#include <livegraft/patch.h>

#include "elf/patch_checks.h"
#include "x86/relocations.h"

namespace lg {

namespace {

using x86::relocation_width;

// Plain section and symbol records for the metadata reader (no libelf: this file is libc only).
struct ElfSection {
  size_t index = 0;
  std::string name;
  uint32_t type = 0;
  uint64_t flags = 0, addr = 0, offset = 0, size = 0, align = 0, entsize = 0;
  uint32_t link = 0, info = 0;
};

struct ElfSymbol {
  std::string name;
  uint64_t value = 0, size = 0;
  uint8_t type = 0, bind = 0, visibility = 0;
  uint16_t shndx = 0;
  size_t index = 0;
  bool defined() const { return shndx != SHN_UNDEF; }
};

struct Reloc {
  uint64_t offset = 0;
  uint32_t type = 0;
  uint32_t sym = 0;
  int64_t addend = 0;
};

// Where a pointer field of the metadata points: a section of the patch object and an offset.
struct Pointer {
  size_t section = 0;
  uint64_t offset = 0;
  std::string symbol;  // the relocation's symbol, for messages
};

bool valid_build_id(std::string_view h) {
  if (h.empty() || h.size() % 2 != 0 || h.size() > 128) return false;
  return std::all_of(h.begin(), h.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// The metadata reader works on plain section and symbol records, made from the one
// bounds-checked reader's view (RelObject::parse() checked every index and string).
class PatchReader {
 public:
  explicit PatchReader(const elf::RelObject& obj) : obj_(obj), path_(obj.label()) {
    for (size_t i = 0; i < obj.sections().size(); ++i) {
      const auto& h = obj.sections()[i].hdr;
      sections_.push_back(ElfSection{i, obj.sections()[i].name, h.sh_type, h.sh_flags, h.sh_addr, h.sh_offset, h.sh_size,
                                     h.sh_addralign, h.sh_entsize, h.sh_link, h.sh_info});
    }
    for (size_t i = 0; i < obj.symbols().size(); ++i) {
      const Elf64_Sym& s = obj.symbols()[i];
      ElfSymbol e;
      e.name = std::string(obj.symbol_name(i));
      if (ELF64_ST_TYPE(s.st_info) == STT_SECTION) e.name.clear();
      e.value = s.st_value;
      e.size = s.st_size;
      e.type = ELF64_ST_TYPE(s.st_info);
      e.bind = ELF64_ST_BIND(s.st_info);
      e.visibility = ELF64_ST_VISIBILITY(s.st_other);
      e.shndx = static_cast<uint16_t>(obj.symbol_section(i));  // < SHN_LORESERVE or SHN_ABS/SHN_COMMON (read() refuses more sections)
      e.index = i;
      symbols_.push_back(std::move(e));
    }
  }

  Result<PatchObject> read() {
    PatchObject out;
    out.path = path_;
    if (sections_.size() >= SHN_LORESERVE)
      return unsupported("{} sections: objects with more than {} sections are not supported", sections_.size(), SHN_LORESERVE - 1);
    LG_TRY_VOID(elf::check_loadable(obj_));
    LG_TRY_VOID(check_symbols(out));
    index_relocations(out);
    LG_TRY_VOID(read_root(out));
    return out;
  }

 private:
  template <class... Args>
  Error bad(fmt::format_string<Args...> f, Args&&... args) const {
    return Error(ErrorKind::bad_patch, fmt::format("{}: {}", path_, fmt::format(f, std::forward<Args>(args)...)));
  }
  template <class... Args>
  Error unsupported(fmt::format_string<Args...> f, Args&&... args) const {
    return Error(ErrorKind::unsupported, fmt::format("{}: {}", path_, fmt::format(f, std::forward<Args>(args)...)));
  }

  std::string section_name(size_t index) const {
    if (index < sections_.size() && !sections_[index].name.empty()) return sections_[index].name;
    return fmt::format("section#{}", index);
  }
  std::string where(size_t section, uint64_t offset) const {
    return fmt::format("{}+{:#x}", section_name(section), offset);
  }
  std::string symbol_name(uint32_t sym) const {
    if (sym >= symbols_.size()) return fmt::format("symbol#{}", sym);
    const ElfSymbol& s = symbols_[sym];
    if (s.type == STT_SECTION) return section_name(s.shndx);
    return s.name.empty() ? fmt::format("symbol#{}", sym) : s.name;
  }

  // What the loader could load but livegraft refuses in a patch, and the list of imports.
  Result<void> check_symbols(PatchObject& out) const {
    std::set<std::string> seen_undefined;
    for (size_t i = 1; i < symbols_.size(); ++i) {
      const ElfSymbol& s = symbols_[i];
      if (s.shndx == SHN_COMMON)
        return unsupported("symbol {} is a COMMON symbol: compile the patch with -fno-common", s.name);
      if (!s.defined() && (s.bind == STB_GLOBAL || s.bind == STB_WEAK) && !s.name.empty() &&
          s.name != "_GLOBAL_OFFSET_TABLE_" && seen_undefined.insert(s.name).second)
        out.undefined.push_back(PatchUndefined{s.name, s.bind == STB_WEAK});
    }
    return ok_result();
  }

  // Indexes the relocations of loaded (SHF_ALLOC) sections by (target section, offset); their
  // types, symbols and bounds were checked by elf::check_loadable().
  void index_relocations(PatchObject& out) {
    std::set<uint32_t> types;
    for (size_t sec = 1; sec < sections_.size(); ++sec) {
      if (!(sections_[sec].flags & SHF_ALLOC)) continue;
      auto& by_offset = relocs_[sec];
      for (const Elf64_Rela& r : obj_.relocations_for(sec)) {
        Reloc rel{r.r_offset, static_cast<uint32_t>(ELF64_R_TYPE(r.r_info)), static_cast<uint32_t>(ELF64_R_SYM(r.r_info)), r.r_addend};
        types.insert(rel.type);
        if (rel.type != R_X86_64_NONE) by_offset.emplace(rel.offset, rel);
      }
    }
    out.relocation_types.assign(types.begin(), types.end());
  }

  // The file bytes [off, off+len) of a loaded section holding metadata.
  Result<std::span<const uint8_t>> bytes_at(size_t sec, uint64_t off, uint64_t len, std::string_view what) const {
    if (sec == 0 || sec >= sections_.size()) return bad("{} points to section index {}, which does not exist", what, sec);
    const ElfSection& s = sections_[sec];
    if (s.type == SHT_NOBITS)
      return bad("{} lies in {} (SHT_NOBITS, zero-filled): metadata must be initialised data", what, s.name);
    if (!(s.flags & SHF_ALLOC)) return bad("{} lies in {}, which is not loaded (no SHF_ALLOC)", what, s.name);
    if (off > s.size || len > s.size - off)
      return bad("{} at {} ({} bytes) runs past the end of {} ({} bytes)", what, where(sec, off), len, s.name, s.size);
    if (s.type == SHT_NULL) return bad("{} lies in section index {} of type SHT_NULL", what, sec);
    auto data = obj_.section_data(sec);
    if (data.size() < off + len) return bad("{} at {} lies outside the bytes of {}", what, where(sec, off), s.name);
    return data.subspan(static_cast<size_t>(off), static_cast<size_t>(len));
  }

  // A plain integer field: it must not be the target of a relocation.
  template <class T>
  Result<T> read_int(size_t sec, uint64_t off, std::string_view what) const {
    LG_TRY(auto b, bytes_at(sec, off, sizeof(T), what));
    if (auto it = relocs_.find(sec); it != relocs_.end()) {
      auto r = it->second.lower_bound(off >= 8 ? off - 7 : 0);
      for (; r != it->second.end() && r->first < off + sizeof(T); ++r)
        if (r->first + relocation_width(r->second.type) > off)
          return bad("{} at {} is an integer field but carries relocation {} against {}", what, where(sec, off),
                     relocation_name(r->second.type), symbol_name(r->second.sym));
    }
    T v;
    std::memcpy(&v, b.data(), sizeof(T));
    return v;
  }

  // A pointer field: NULL when zero without a relocation; otherwise an R_X86_64_64 relocation
  // against a symbol defined in the patch gives the section and offset it points to.
  Result<std::optional<Pointer>> read_ptr(size_t sec, uint64_t off, std::string_view what) const {
    LG_TRY(auto b, bytes_at(sec, off, 8, what));
    uint64_t in_file;
    std::memcpy(&in_file, b.data(), 8);
    const Reloc* rel = nullptr;
    if (auto it = relocs_.find(sec); it != relocs_.end()) {
      auto r = it->second.lower_bound(off >= 7 ? off - 7 : 0);
      for (; r != it->second.end() && r->first < off + 8; ++r) {
        if (r->first == off && r->second.type == R_X86_64_64) {
          rel = &r->second;
        } else if (r->first + relocation_width(r->second.type) > off) {
          return bad("pointer {} at {} carries relocation {} against {}; only R_X86_64_64 is valid in metadata", what,
                     where(sec, off), relocation_name(r->second.type), symbol_name(r->second.sym));
        }
      }
    }
    if (!rel) {
      if (in_file != 0)
        return bad("pointer {} at {} holds {:#x} without a relocation: an absolute address cannot be right in a "
                   "relocatable patch",
                   what, where(sec, off), in_file);
      return std::optional<Pointer>();
    }
    const ElfSymbol& sym = symbols_[rel->sym];
    if (!sym.defined())
      return bad("pointer {} at {} refers to undefined symbol {}: metadata and new functions must be defined in the "
                 "patch itself",
                 what, where(sec, off), symbol_name(rel->sym));
    if (sym.shndx >= SHN_LORESERVE)
      return bad("pointer {} at {} refers to symbol {} with special section index {:#x}", what, where(sec, off),
                 symbol_name(rel->sym), sym.shndx);
    Pointer p;
    p.section = sym.shndx;
    p.offset = sym.value + static_cast<uint64_t>(rel->addend);
    p.symbol = symbol_name(rel->sym);
    return std::optional<Pointer>(std::move(p));
  }

  Result<std::optional<std::string>> read_string(size_t sec, uint64_t off, std::string_view what) const {
    LG_TRY(auto p, read_ptr(sec, off, what));
    if (!p) return std::optional<std::string>();
    LG_TRY(auto rest, bytes_at(p->section, p->offset, 0, what));
    (void)rest;
    const ElfSection& s = sections_[p->section];
    LG_TRY(auto tail, bytes_at(p->section, p->offset, s.size - p->offset, what));
    auto nul = std::find(tail.begin(), tail.end(), uint8_t{0});
    if (nul == tail.end())
      return bad("string {} at {} (via {}) is not NUL-terminated inside {}", what, where(p->section, p->offset),
                 p->symbol, s.name);
    return std::optional<std::string>(std::string(tail.begin(), nul));
  }

  Result<void> read_root(PatchObject& out) {
    const ElfSection* root = nullptr;
    for (const ElfSection& s : sections_) {
      if (s.index == 0 || s.name != LIVEGRAFT_SECTION) continue;
      if (root) return bad("two {} sections (index {} and {}): one patch per object", LIVEGRAFT_SECTION, root->index, s.index);
      root = &s;
    }
    if (!root)
      return bad("no {} section: not a livegraft patch (use LIVEGRAFT_PATCH() from <livegraft/patch.h>)",
                 LIVEGRAFT_SECTION);
    if (root->type != SHT_PROGBITS || !(root->flags & SHF_ALLOC))
      return bad("section {} must be SHT_PROGBITS and SHF_ALLOC", LIVEGRAFT_SECTION);
    const size_t rs = root->index;
    std::string sec = LIVEGRAFT_SECTION;
    if (root->size < offsetof(livegraft_patch, flags))
      return bad("section {} is {} bytes, too small for a struct livegraft_patch ({} bytes)", sec, root->size,
                 sizeof(livegraft_patch));
    LG_TRY(uint32_t magic, read_int<uint32_t>(rs, offsetof(livegraft_patch, magic), "livegraft_patch.magic"));
    if (magic != LIVEGRAFT_MAGIC)
      return bad("section {} has magic {:#010x}, expected {:#010x}", sec, magic, LIVEGRAFT_MAGIC);
    LG_TRY(uint16_t version, read_int<uint16_t>(rs, offsetof(livegraft_patch, version), "livegraft_patch.version"));
    if (version < LIVEGRAFT_LAYOUT_VERSION_MIN || version > LIVEGRAFT_LAYOUT_VERSION)
      return unsupported("patch layout version {} in section {}, but this livegraft reads layout versions {} to {}; "
                         "rebuild the patch against this livegraft's <livegraft/patch.h>",
                         version, sec, LIVEGRAFT_LAYOUT_VERSION_MIN, LIVEGRAFT_LAYOUT_VERSION);
    out.version = version;
    version_ = version;
    LG_TRY(uint16_t size, read_int<uint16_t>(rs, offsetof(livegraft_patch, size), "livegraft_patch.size"));
    if (root->size != sizeof(livegraft_patch) || size != sizeof(livegraft_patch))
      return bad("section {} is {} bytes and declares size {}; layout version {} needs exactly {} (one struct "
                 "livegraft_patch)",
                 sec, root->size, size, version, sizeof(livegraft_patch));
    LG_TRY(out.flags, read_int<uint32_t>(rs, offsetof(livegraft_patch, flags), "livegraft_patch.flags"));
    constexpr uint32_t kKnownFlags = LIVEGRAFT_PATCH_REPLACE | LIVEGRAFT_PATCH_IMMEDIATE | LIVEGRAFT_PATCH_KEEP_CODE;
    if (out.flags & ~kKnownFlags) return bad("unknown patch flags {:#x}", out.flags & ~kKnownFlags);
    if (out.flags & LIVEGRAFT_PATCH_REPLACE)
      return Error(ErrorKind::unsupported,
                   fmt::format("{}: cumulative (LIVEGRAFT_PATCH_REPLACE) patches are not supported yet", path_));
    LG_TRY(uint32_t nr_objects, read_int<uint32_t>(rs, offsetof(livegraft_patch, nr_objects), "livegraft_patch.nr_objects"));
    LG_TRY(auto name, read_string(rs, offsetof(livegraft_patch, name), "livegraft_patch.name"));
    if (!name) return bad("the patch has no name (livegraft_patch.name is NULL)");
    if (!elf::valid_patch_name(*name))
      return bad("patch name '{}' is invalid: use 1 to 64 characters from [A-Za-z0-9_.-], not '.' or '..'", *name);
    out.name = *name;
    LG_TRY(auto states, read_ptr(rs, offsetof(livegraft_patch, states), "livegraft_patch.states"));
    LG_TRY(uint64_t nr_states, read_int<uint64_t>(rs, offsetof(livegraft_patch, nr_states), "livegraft_patch.nr_states"));
    if (states || nr_states != 0)
      return unsupported("patch '{}' declares system states, which are reserved in layout version 1 (states must be "
                         "NULL and nr_states 0)",
                         out.name);
    for (size_t i = 0; i < 4; ++i) {
      LG_TRY(uint64_t r, read_int<uint64_t>(rs, offsetof(livegraft_patch, reserved) + 8 * i, "livegraft_patch.reserved"));
      if (r != 0) return bad("livegraft_patch.reserved[{}] is {:#x}, must be 0", i, r);
    }
    if (nr_objects == 0) return bad("patch '{}' has no target objects (nr_objects is 0)", out.name);
    if (nr_objects > 1)
      return unsupported("patch '{}' has {} target objects; layout version 1 supports exactly one target object per "
                         "patch (split it into one patch per object)",
                         out.name, nr_objects);
    LG_TRY(auto objects, read_ptr(rs, offsetof(livegraft_patch, objects), "livegraft_patch.objects"));
    if (!objects) return bad("patch '{}' has nr_objects {} but objects is NULL", out.name, nr_objects);
    for (uint32_t i = 0; i < nr_objects; ++i) {
      LG_TRY(auto obj, read_object(*objects, i));
      for (const PatchSym& s : obj.syms)
        if (std::none_of(out.undefined.begin(), out.undefined.end(), [&](const PatchUndefined& u) { return u.name == s.name; }))
          return bad("objects[{}].syms binds '{}', which is not an undefined symbol of the patch", i, s.name);
      out.objects.push_back(std::move(obj));
    }
    return ok_result();
  }

  // Version 2's object is 80 bytes; version 1's ends with a zero `reserved` where `syms` is.
  uint64_t object_size() const { return version_ >= 2 ? sizeof(livegraft_object) : offsetof(livegraft_object, nr_syms); }

  Result<void> read_syms(size_t sec, uint64_t base, const std::string& what, PatchTargetObject& obj) const {
    LG_TRY(uint64_t nr_syms, read_int<uint64_t>(sec, base + offsetof(livegraft_object, nr_syms), what + ".nr_syms"));
    LG_TRY(auto syms, read_ptr(sec, base + offsetof(livegraft_object, syms), what + ".syms"));
    if (!syms) {
      if (nr_syms != 0) return bad("{} has nr_syms {} but syms is NULL", what, nr_syms);
      return ok_result();
    }
    LG_TRY(auto at_syms, bytes_at(syms->section, syms->offset, 0, what + ".syms"));
    (void)at_syms;
    const ElfSection& ss = sections_[syms->section];
    if (nr_syms > (ss.size - syms->offset) / sizeof(livegraft_sym))
      return bad("{}.nr_syms is {}, but {} holds at most {} entries after {}", what, nr_syms, ss.name,
                 (ss.size - syms->offset) / sizeof(livegraft_sym), where(syms->section, syms->offset));
    for (uint64_t j = 0; j < nr_syms; ++j) {
      const uint64_t at = syms->offset + j * sizeof(livegraft_sym);
      std::string w = fmt::format("{}.syms[{}]", what, j);
      PatchSym s;
      LG_TRY(auto name, read_string(syms->section, at + offsetof(livegraft_sym, name), w + ".name"));
      LG_TRY(auto old_name, read_string(syms->section, at + offsetof(livegraft_sym, old_name), w + ".old_name"));
      if (!name || name->empty() || !old_name || old_name->empty()) return bad("{}: name or old_name is NULL or empty", w);
      s.name = *name;
      s.old_name = *old_name;
      LG_TRY(s.old_sympos, read_int<uint64_t>(syms->section, at + offsetof(livegraft_sym, old_sympos), w + ".old_sympos"));
      LG_TRY(uint64_t flags, read_int<uint64_t>(syms->section, at + offsetof(livegraft_sym, flags), w + ".flags"));
      if (flags != 0) return bad("{} ('{}').flags is {:#x}, must be 0 (reserved)", w, s.name, flags);
      if (obj.sym(s.name)) return bad("{}.syms binds '{}' twice", what, s.name);
      obj.syms.push_back(std::move(s));
    }
    return ok_result();
  }

  Result<PatchTargetObject> read_object(const Pointer& array, uint32_t i) const {
    const size_t sec = array.section;
    const uint64_t base = array.offset + static_cast<uint64_t>(i) * object_size();
    std::string what = fmt::format("objects[{}]", i);
    LG_TRY(auto whole, bytes_at(sec, base, object_size(), what));
    (void)whole;
    PatchTargetObject obj;
    LG_TRY(obj.name, read_string(sec, base + offsetof(livegraft_object, name), what + ".name"));
    if (obj.name && obj.name->empty())
      return bad("{}.name is an empty string (use LIVEGRAFT_MAIN_EXECUTABLE, i.e. NULL, for the executable)", what);
    LG_TRY(obj.build_id, read_string(sec, base + offsetof(livegraft_object, build_id), what + ".build_id"));
    if (obj.build_id && !valid_build_id(*obj.build_id))
      return bad("{}.build_id '{}' is not a lower-case hex GNU build-id (as printed by `readelf -n`)", what,
                 *obj.build_id);
    static constexpr std::pair<size_t, const char*> callbacks[] = {
        {offsetof(livegraft_callbacks, pre_patch), "pre_patch"},
        {offsetof(livegraft_callbacks, post_patch), "post_patch"},
        {offsetof(livegraft_callbacks, pre_unpatch), "pre_unpatch"},
        {offsetof(livegraft_callbacks, post_unpatch), "post_unpatch"},
    };
    for (auto [off, cb] : callbacks) {
      LG_TRY(auto p, read_ptr(sec, base + offsetof(livegraft_object, callbacks) + off, what + ".callbacks." + cb));
      if (p) return unsupported("{}.callbacks.{} is set; callbacks are reserved in layout version 1 and must be NULL", what, cb);
    }
    if (version_ >= 2) {
      LG_TRY_VOID(read_syms(sec, base, what, obj));
    } else {
      LG_TRY(uint64_t reserved, read_int<uint64_t>(sec, base + offsetof(livegraft_object, syms), what + ".reserved"));
      if (reserved != 0) return bad("{}.reserved is {:#x}, must be 0 in layout version 1", what, reserved);
    }
    LG_TRY(uint64_t nr_funcs, read_int<uint64_t>(sec, base + offsetof(livegraft_object, nr_funcs), what + ".nr_funcs"));
    if (nr_funcs == 0) return bad("{} ({}) has no functions (nr_funcs is 0)", what, obj.name.value_or("main executable"));
    LG_TRY(auto funcs, read_ptr(sec, base + offsetof(livegraft_object, funcs), what + ".funcs"));
    if (!funcs) return bad("{} has nr_funcs {} but funcs is NULL", what, nr_funcs);
    LG_TRY(auto at_funcs, bytes_at(funcs->section, funcs->offset, 0, what + ".funcs"));
    (void)at_funcs;
    const ElfSection& fs = sections_[funcs->section];
    if (nr_funcs > (fs.size - funcs->offset) / sizeof(livegraft_func))
      return bad("{}.nr_funcs is {}, but {} holds at most {} entries after {}", what, nr_funcs, fs.name,
                 (fs.size - funcs->offset) / sizeof(livegraft_func), where(funcs->section, funcs->offset));
    std::set<std::pair<std::string, uint64_t>> seen;
    for (uint64_t j = 0; j < nr_funcs; ++j) {
      LG_TRY(PatchFunc f, read_func(*funcs, what, j));
      if (!seen.emplace(f.old_name, f.old_sympos).second)
        return bad("{}.funcs lists '{}' (old_sympos {}) twice", what, f.old_name, f.old_sympos);
      obj.funcs.push_back(std::move(f));
    }
    return obj;
  }

  Result<PatchFunc> read_func(const Pointer& array, const std::string& obj_what, uint64_t j) const {
    const size_t sec = array.section;
    const uint64_t base = array.offset + j * sizeof(livegraft_func);
    std::string what = fmt::format("{}.funcs[{}]", obj_what, j);
    LG_TRY(auto whole, bytes_at(sec, base, sizeof(livegraft_func), what));
    (void)whole;
    PatchFunc f;
    LG_TRY(auto old_name, read_string(sec, base + offsetof(livegraft_func, old_name), what + ".old_name"));
    if (!old_name || old_name->empty()) return bad("{}.old_name is NULL or empty", what);
    f.old_name = *old_name;
    what += fmt::format(" ('{}')", f.old_name);
    LG_TRY(f.old_sympos, read_int<uint64_t>(sec, base + offsetof(livegraft_func, old_sympos), what + ".old_sympos"));
    LG_TRY(uint64_t flags, read_int<uint64_t>(sec, base + offsetof(livegraft_func, flags), what + ".flags"));
    if (flags != 0) return bad("{}.flags is {:#x}, must be 0 (reserved)", what, flags);
    LG_TRY(auto target, read_ptr(sec, base + offsetof(livegraft_func, new_func), what + ".new_func"));
    if (!target)
      return bad("{}.new_func is NULL (in C++, make sure the metadata is constant-initialised: no dynamic "
                 "initialisation)",
                 what);
    const auto& secs = sections_;
    if (target->section >= secs.size() || !(secs[target->section].flags & SHF_EXECINSTR))
      return bad("{}.new_func points to {} (via {}), which is not executable code", what,
                 where(target->section, target->offset), target->symbol);
    f.new_section = target->section;
    f.new_offset = target->offset;
    const ElfSymbol* best = nullptr;
    for (const ElfSymbol& s : symbols_) {
      if (s.type != STT_FUNC || s.shndx != target->section) continue;
      if (target->offset < s.value || target->offset - s.value >= s.size) continue;
      if (!best || (s.value == target->offset && best->value != target->offset)) best = &s;
    }
    if (!best)
      return bad("{}.new_func points to {} (via {}), which no function symbol (STT_FUNC with a size) covers", what,
                 where(target->section, target->offset), target->symbol);
    f.new_symbol = best->name;
    f.new_size = best->size;
    return f;
  }

  const elf::RelObject& obj_;
  std::string path_;
  std::vector<ElfSection> sections_;
  std::vector<ElfSymbol> symbols_;
  std::map<size_t, std::map<uint64_t, Reloc>> relocs_;  // target section -> offset -> relocation
  uint16_t version_ = LIVEGRAFT_LAYOUT_VERSION;
};

}  // namespace

Result<PatchFile> open_patch_file(const std::string& path) {
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever.
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  if (!fd.valid()) {
    ErrorKind k = errno == ENOENT || errno == ENOTDIR ? ErrorKind::not_found : errno == EACCES ? ErrorKind::permission : ErrorKind::io;
    return make_errno_error(k, "cannot open patch file {}", path);
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return make_errno_error(ErrorKind::io, "stat {}", path);
  if (!S_ISREG(st.st_mode)) return make_error(ErrorKind::bad_patch, "{} is not a regular file: a patch is an object file (.o)", path);
  if (static_cast<uint64_t>(st.st_size) > elf::kMaxPatchFile)
    return make_error(ErrorKind::bad_patch, "{} is {} bytes, larger than any patch object ({} at most)", path, st.st_size, elf::kMaxPatchFile);
  PatchFile f;
  f.path = path;
  f.bytes.resize(static_cast<size_t>(st.st_size));
  size_t got = 0;
  while (got < f.bytes.size()) {
    ssize_t n = ::pread(fd.get(), f.bytes.data() + got, f.bytes.size() - got, static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return make_errno_error(ErrorKind::io, "read {}", path);
    if (n == 0) break;  // shrank while we read: what we have is what we check
    got += static_cast<size_t>(n);
  }
  f.bytes.resize(got);
  return f;
}

Result<UniqueFd> sealed_copy(std::span<const uint8_t> bytes, const std::string& name) {
  UniqueFd fd(::memfd_create(name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd.valid()) return make_errno_error(ErrorKind::io, "memfd_create for {}", name);
  for (size_t off = 0; off < bytes.size();) {
    ssize_t n = ::write(fd.get(), bytes.data() + off, bytes.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return make_errno_error(ErrorKind::io, "writing the copy of {}", name);
    off += static_cast<size_t>(n);
  }
  if (::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0)
    return make_errno_error(ErrorKind::io, "sealing the copy of {}", name);
  return fd;
}

Result<PatchObject> read_patch_object(std::span<const uint8_t> bytes, const std::string& label) {
  LG_TRY(auto obj, elf::RelObject::parse(bytes, label));
  LG_TRY(auto patch, PatchReader(obj).read());
  // The replacements' code, for the controller's checks (it never reads the file again).
  for (auto& o : patch.objects)
    for (auto& f : o.funcs) {
      auto code = obj.section_data(f.new_section);
      if (f.new_offset > code.size() || f.new_size > code.size() - f.new_offset)
        return make_error(ErrorKind::bad_patch, "{}: the replacement of '{}' lies outside its section", label, f.old_name);
      f.new_code.assign(code.begin() + static_cast<long>(f.new_offset), code.begin() + static_cast<long>(f.new_offset + f.new_size));
    }
  return patch;
}

Result<PatchObject> read_patch_object(const std::string& path) {
  LG_TRY(auto file, open_patch_file(path));
  return read_patch_object(file.bytes, path);
}

bool supported_relocation(uint32_t type) { return x86::classify_relocation(type) == x86::RelocClass::supported; }

const char* relocation_name(uint32_t type) { return x86::relocation_name(type); }

}  // namespace lg
