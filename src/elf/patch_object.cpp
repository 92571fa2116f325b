#include "elf/patch_object.h"
#include "x86/relocations.h"

#include <elf.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <map>
#include <set>

#include <livegraft/patch.h>

namespace lg {

namespace {

// Bytes a relocation of this type writes (for overlap checks against plain integer fields).
uint64_t relocation_width(uint32_t type) {
  switch (type) {
    case R_X86_64_NONE: return 0;
    case R_X86_64_64:
    case R_X86_64_PC64:
    case R_X86_64_GOTOFF64:
    case R_X86_64_GOTPC64:
    case R_X86_64_GOT64:
    case R_X86_64_GOTPCREL64:
    case R_X86_64_GOTPLT64:
    case R_X86_64_PLTOFF64:
    case R_X86_64_SIZE64:
    case R_X86_64_DTPMOD64:
    case R_X86_64_DTPOFF64:
    case R_X86_64_TPOFF64:
    case R_X86_64_RELATIVE64:
      return 8;
    case R_X86_64_16:
    case R_X86_64_PC16: return 2;
    case R_X86_64_8:
    case R_X86_64_PC8: return 1;
    default: return 4;
  }
}

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

bool valid_patch_name(std::string_view n) {
  if (n.empty() || n.size() > 64) return false;
  return std::all_of(n.begin(), n.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
           c == '-';
  });
}

bool valid_build_id(std::string_view h) {
  if (h.empty() || h.size() % 2 != 0 || h.size() > 128) return false;
  return std::all_of(h.begin(), h.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

class PatchReader {
 public:
  PatchReader(const ElfFile& elf, std::string path) : elf_(elf), path_(std::move(path)) {}

  Result<PatchObject> read() {
    PatchObject out;
    out.path = path_;
    LG_TRY_VOID(check_header());
    LG_TRY_VOID(check_symbols(out));
    LG_TRY_VOID(check_sections());
    LG_TRY_VOID(index_relocations(out));
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
    if (index < elf_.sections().size() && !elf_.sections()[index].name.empty()) return elf_.sections()[index].name;
    return fmt::format("section#{}", index);
  }
  std::string where(size_t section, uint64_t offset) const {
    return fmt::format("{}+{:#x}", section_name(section), offset);
  }
  std::string symbol_name(uint32_t sym) const {
    const auto& syms = elf_.symbols();
    if (sym >= syms.size()) return fmt::format("symbol#{}", sym);
    const ElfSymbol& s = syms[sym];
    if (s.type == STT_SECTION) return section_name(s.shndx);
    return s.name.empty() ? fmt::format("symbol#{}", sym) : s.name;
  }

  Result<void> check_header() const {
    const GElf_Ehdr& h = elf_.header();
    if (h.e_ident[EI_CLASS] != ELFCLASS64 || h.e_ident[EI_DATA] != ELFDATA2LSB || h.e_machine != EM_X86_64)
      return bad("not an ELF64 little-endian x86-64 object (class {}, data {}, machine {})", h.e_ident[EI_CLASS],
                 h.e_ident[EI_DATA], h.e_machine);
    if (h.e_type != ET_REL)
      return bad("ELF type {} is not ET_REL: a patch is a relocatable object (compile with `-c -fPIC`, do not link it)",
                 h.e_type);
    return ok_result();
  }

  Result<void> check_symbols(PatchObject& out) const {
    std::set<std::string> seen_undefined;
    const auto& syms = elf_.symbols();
    for (size_t i = 1; i < syms.size(); ++i) {
      const ElfSymbol& s = syms[i];
      if (s.type == STT_TLS)
        return unsupported("thread-local storage is not supported in patches (symbol {})", symbol_name(i));
      if (s.shndx == SHN_XINDEX)
        return unsupported("symbol {} uses an extended section index (SHN_XINDEX): objects with more than 65279 "
                           "sections are not supported",
                           symbol_name(i));
      if (s.shndx == SHN_COMMON)
        return unsupported("symbol {} is a COMMON symbol: compile the patch with -fno-common", s.name);
      if (s.defined() && s.type == STT_GNU_IFUNC)
        return unsupported("IFUNC definitions (STT_GNU_IFUNC) are not supported in patches (symbol {})", s.name);
      if (s.defined() && s.shndx < SHN_LORESERVE && s.shndx >= elf_.sections().size())
        return bad("symbol {} is defined in section index {}, which does not exist", symbol_name(i), s.shndx);
      if (!s.defined() && (s.bind == STB_GLOBAL || s.bind == STB_WEAK) && !s.name.empty() &&
          s.name != "_GLOBAL_OFFSET_TABLE_" && seen_undefined.insert(s.name).second)
        out.undefined.push_back(PatchUndefined{s.name, s.bind == STB_WEAK});
    }
    return ok_result();
  }

  Result<void> check_sections() const {
    for (const ElfSection& s : elf_.sections()) {
      if ((s.flags & SHF_TLS) && (s.flags & SHF_ALLOC))
        return unsupported("thread-local storage is not supported in patches (section {})", s.name);
      if (s.type == SHT_REL && s.info < elf_.sections().size() && (elf_.sections()[s.info].flags & SHF_ALLOC))
        return unsupported("section {} holds SHT_REL relocations; x86-64 objects use SHT_RELA only", s.name);
    }
    return ok_result();
  }

  // Reads every SHT_RELA section that applies to a loaded (SHF_ALLOC) section; checks types,
  // symbols and offsets; indexes them by (target section, offset).
  Result<void> index_relocations(PatchObject& out) {
    std::set<uint32_t> types;
    const auto& secs = elf_.sections();
    for (const ElfSection& rs : secs) {
      if (rs.type != SHT_RELA) continue;
      if (rs.info == 0 || rs.info >= secs.size())
        return bad("relocation section {} applies to section index {}, which does not exist", rs.name, rs.info);
      const ElfSection& target = secs[rs.info];
      if (!(target.flags & SHF_ALLOC)) continue;  // debug info and the like: never loaded
      if (!elf_.has_symtab() || rs.link >= secs.size() || secs[rs.link].type != SHT_SYMTAB)
        return bad("relocation section {} is not linked to the symbol table (sh_link {})", rs.name, rs.link);
      size_t relasz = gelf_fsize(elf_.raw(), ELF_T_RELA, 1, EV_CURRENT);
      if (rs.entsize != relasz || rs.size % relasz != 0)
        return bad("relocation section {} has entry size {} and size {}, expected multiples of {}", rs.name, rs.entsize,
                   rs.size, relasz);
      auto raw = elf_.section_data(rs.index);
      if (!raw) return Error(raw.error()).context(path_);
      Elf_Scn* scn = elf_getscn(elf_.raw(), rs.index);
      Elf_Data* data = scn ? elf_getdata(scn, nullptr) : nullptr;
      if (!data) return bad("cannot read relocation section {}: {}", rs.name, elf_errmsg(-1));
      auto& by_offset = relocs_[rs.info];
      for (size_t i = 0; i < data->d_size / relasz; ++i) {
        GElf_Rela r;
        if (!gelf_getrela(data, static_cast<int>(i), &r)) return bad("malformed relocation #{} in {}", i, rs.name);
        Reloc rel{r.r_offset, static_cast<uint32_t>(GELF_R_TYPE(r.r_info)), static_cast<uint32_t>(GELF_R_SYM(r.r_info)),
                  r.r_addend};
        std::string at = where(rs.info, rel.offset);
        if (rel.sym >= elf_.symbols().size())
          return bad("relocation #{} in {} ({} at {}) refers to symbol index {}, past the symbol table", i, rs.name,
                     relocation_name(rel.type), at, rel.sym);
        // The agent cannot give a patch its own TLS block, nor bind to the target's TLS through
        // the static/dynamic TLS models (docs/patch-format.md).
        if (x86::classify_relocation(rel.type) == x86::RelocClass::tls || elf_.symbols()[rel.sym].type == STT_TLS)
          return unsupported("thread-local storage is not supported in patches (symbol {}, relocation {} at {})",
                             symbol_name(rel.sym), relocation_name(rel.type), at);
        if (!supported_relocation(rel.type))
          return unsupported("relocation {} (type {}) at {} against symbol {} is not supported by the livegraft "
                             "loader (compile the patch with -fPIC and the default code model)",
                             relocation_name(rel.type), rel.type, at, symbol_name(rel.sym));
        if (target.type == SHT_NOBITS || rel.offset > target.size || relocation_width(rel.type) > target.size - rel.offset)
          return bad("relocation {} at {} lies outside its section ({} bytes)", relocation_name(rel.type), at,
                     target.size);
        if (rel.type != R_X86_64_NONE && !by_offset.emplace(rel.offset, rel).second)
          return bad("two relocations at {}", at);
        types.insert(rel.type);
      }
    }
    out.relocation_types.assign(types.begin(), types.end());
    return ok_result();
  }

  // The file bytes [off, off+len) of a loaded section holding metadata.
  Result<std::span<const uint8_t>> bytes_at(size_t sec, uint64_t off, uint64_t len, std::string_view what) const {
    if (sec == 0 || sec >= elf_.sections().size()) return bad("{} points to section index {}, which does not exist", what, sec);
    const ElfSection& s = elf_.sections()[sec];
    if (s.type == SHT_NOBITS)
      return bad("{} lies in {} (SHT_NOBITS, zero-filled): metadata must be initialised data", what, s.name);
    if (!(s.flags & SHF_ALLOC)) return bad("{} lies in {}, which is not loaded (no SHF_ALLOC)", what, s.name);
    if (off > s.size || len > s.size - off)
      return bad("{} at {} ({} bytes) runs past the end of {} ({} bytes)", what, where(sec, off), len, s.name, s.size);
    if (s.type == SHT_NULL) return bad("{} lies in section index {} of type SHT_NULL", what, sec);
    auto data = elf_.section_data(sec);
    if (!data) return Error(data.error()).context(path_);
    if (data->size() < off + len) return bad("{} at {} lies outside the bytes of {}", what, where(sec, off), s.name);
    return data->subspan(static_cast<size_t>(off), static_cast<size_t>(len));
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
    const ElfSymbol& sym = elf_.symbols()[rel->sym];
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
    const ElfSection& s = elf_.sections()[p->section];
    LG_TRY(auto tail, bytes_at(p->section, p->offset, s.size - p->offset, what));
    auto nul = std::find(tail.begin(), tail.end(), uint8_t{0});
    if (nul == tail.end())
      return bad("string {} at {} (via {}) is not NUL-terminated inside {}", what, where(p->section, p->offset),
                 p->symbol, s.name);
    return std::optional<std::string>(std::string(tail.begin(), nul));
  }

  Result<void> read_root(PatchObject& out) {
    const ElfSection* root = nullptr;
    for (const ElfSection& s : elf_.sections()) {
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
    if (version != LIVEGRAFT_LAYOUT_VERSION)
      return unsupported("patch layout version {} in section {}, but this livegraft reads layout version {}; rebuild "
                         "the patch against this livegraft's <livegraft/patch.h>",
                         version, sec, LIVEGRAFT_LAYOUT_VERSION);
    LG_TRY(uint16_t size, read_int<uint16_t>(rs, offsetof(livegraft_patch, size), "livegraft_patch.size"));
    if (root->size != sizeof(livegraft_patch) || size != sizeof(livegraft_patch))
      return bad("section {} is {} bytes and declares size {}; layout version {} needs exactly {} (one struct "
                 "livegraft_patch)",
                 sec, root->size, size, version, sizeof(livegraft_patch));
    LG_TRY(out.flags, read_int<uint32_t>(rs, offsetof(livegraft_patch, flags), "livegraft_patch.flags"));
    if (out.flags & ~LIVEGRAFT_PATCH_REPLACE) return bad("unknown patch flags {:#x}", out.flags & ~LIVEGRAFT_PATCH_REPLACE);
    if (out.flags & LIVEGRAFT_PATCH_REPLACE)
      return Error(ErrorKind::unsupported,
                   fmt::format("{}: cumulative (LIVEGRAFT_PATCH_REPLACE) patches are not supported yet", path_));
    LG_TRY(uint32_t nr_objects, read_int<uint32_t>(rs, offsetof(livegraft_patch, nr_objects), "livegraft_patch.nr_objects"));
    LG_TRY(auto name, read_string(rs, offsetof(livegraft_patch, name), "livegraft_patch.name"));
    if (!name) return bad("the patch has no name (livegraft_patch.name is NULL)");
    if (!valid_patch_name(*name))
      return bad("patch name '{}' is invalid: use 1 to 64 characters from [A-Za-z0-9_.-]", *name);
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
      out.objects.push_back(std::move(obj));
    }
    return ok_result();
  }

  Result<PatchTargetObject> read_object(const Pointer& array, uint32_t i) const {
    const size_t sec = array.section;
    const uint64_t base = array.offset + static_cast<uint64_t>(i) * sizeof(livegraft_object);
    std::string what = fmt::format("objects[{}]", i);
    LG_TRY(auto whole, bytes_at(sec, base, sizeof(livegraft_object), what));
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
    LG_TRY(uint64_t reserved, read_int<uint64_t>(sec, base + offsetof(livegraft_object, reserved), what + ".reserved"));
    if (reserved != 0) return bad("{}.reserved is {:#x}, must be 0", what, reserved);
    LG_TRY(uint64_t nr_funcs, read_int<uint64_t>(sec, base + offsetof(livegraft_object, nr_funcs), what + ".nr_funcs"));
    if (nr_funcs == 0) return bad("{} ({}) has no functions (nr_funcs is 0)", what, obj.name.value_or("main executable"));
    LG_TRY(auto funcs, read_ptr(sec, base + offsetof(livegraft_object, funcs), what + ".funcs"));
    if (!funcs) return bad("{} has nr_funcs {} but funcs is NULL", what, nr_funcs);
    LG_TRY(auto at_funcs, bytes_at(funcs->section, funcs->offset, 0, what + ".funcs"));
    (void)at_funcs;
    const ElfSection& fs = elf_.sections()[funcs->section];
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
    const auto& secs = elf_.sections();
    if (target->section >= secs.size() || !(secs[target->section].flags & SHF_EXECINSTR))
      return bad("{}.new_func points to {} (via {}), which is not executable code", what,
                 where(target->section, target->offset), target->symbol);
    f.new_section = target->section;
    f.new_offset = target->offset;
    const ElfSymbol* best = nullptr;
    for (const ElfSymbol& s : elf_.symbols()) {
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

  const ElfFile& elf_;
  std::string path_;
  std::map<size_t, std::map<uint64_t, Reloc>> relocs_;  // target section -> offset -> relocation
};

}  // namespace

Result<PatchObject> read_patch_object(const std::string& path) {
  auto elf = ElfFile::open(path);
  if (!elf) {
    Error e = elf.error();
    if (e.kind == ErrorKind::invalid_argument) e.kind = ErrorKind::bad_patch;
    return e;
  }
  return PatchReader(*elf, path).read();
}

bool supported_relocation(uint32_t type) { return x86::classify_relocation(type) == x86::RelocClass::supported; }

const char* relocation_name(uint32_t type) { return x86::relocation_name(type); }

}  // namespace lg
