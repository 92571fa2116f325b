#include "builder/load.h"

#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <unistd.h>

#include <algorithm>

#include "builder/compile_commands.h"
#include "common/scope_guard.h"

namespace lg::builder {

const char* to_string(Status status) {
  switch (status) {
    case Status::same: return "SAME";
    case Status::changed: return "CHANGED";
    case Status::added: return "NEW";
  }
  return "?";
}

bool Section::is_text() const { return flags & SHF_EXECINSTR; }
bool Section::is_writable() const { return flags & SHF_WRITE; }
bool Section::is_strings() const { return (flags & SHF_MERGE) && (flags & SHF_STRINGS); }
bool Section::is_merge_constants() const { return (flags & SHF_MERGE) && !(flags & SHF_STRINGS); }
bool Section::is_tls() const { return flags & SHF_TLS; }
bool Section::is_alloc() const { return flags & SHF_ALLOC; }

bool Symbol::defined() const { return shndx != SHN_UNDEF; }
bool Symbol::is_function() const { return type == STT_FUNC || type == STT_GNU_IFUNC; }
bool Symbol::is_object() const { return type == STT_OBJECT || type == STT_TLS; }
bool Symbol::is_section() const { return type == STT_SECTION; }
bool Symbol::is_local() const { return bind == STB_LOCAL; }

const Section* Object::section_of(const Symbol& s) const {
  if (s.shndx == SHN_UNDEF || s.shndx >= SHN_LORESERVE || s.shndx >= sections.size()) return nullptr;
  return &sections[s.shndx];
}
Section* Object::section_of(const Symbol& s) {
  return const_cast<Section*>(static_cast<const Object*>(this)->section_of(s));
}

const std::vector<const Symbol*>& Object::symbols_in(size_t section_index) const {
  static const std::vector<const Symbol*> none;
  return section_index < by_section_.size() ? by_section_[section_index] : none;
}

void Object::index_symbols() {
  by_section_.assign(sections.size(), {});
  for (const Symbol& s : symbols)
    if (s.shndx < by_section_.size() && !s.is_section() && s.type != STT_FILE && s.index != 0) by_section_[s.shndx].push_back(&s);
}

namespace {

bool is_debug_section(uint64_t flags, const std::string& name) {
  return !(flags & SHF_ALLOC) && (name.starts_with(".debug_") || name.starts_with(".rela.debug_"));
}

Error elf_error(const std::string& path, std::string_view what) {
  return make_error(ErrorKind::bad_patch, "{}: {}: {}", path, what, elf_errmsg(-1));
}

}  // namespace

Result<Object> load_object(const std::string& path) {
  if (elf_version(EV_CURRENT) == EV_NONE) return elf_error(path, "libelf initialisation");
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return make_errno_error(ErrorKind::not_found, "open {}", path);
  ScopeGuard close_fd([&] { ::close(fd); });
  Elf* elf = elf_begin(fd, ELF_C_READ, nullptr);
  if (!elf) return elf_error(path, "not an ELF file");
  ScopeGuard end_elf([&] { elf_end(elf); });

  GElf_Ehdr ehdr;
  if (elf_kind(elf) != ELF_K_ELF || !gelf_getehdr(elf, &ehdr)) return elf_error(path, "not an ELF file");
  if (ehdr.e_ident[EI_CLASS] != ELFCLASS64 || ehdr.e_machine != EM_X86_64)
    return make_error(ErrorKind::unsupported, "{}: not an ELF64 x86-64 object", path);
  if (ehdr.e_type != ET_REL)
    return make_error(ErrorKind::invalid_argument,
                      "{}: not a relocatable object (ET_REL); pass the .o files compiled with "
                      "-ffunction-sections -fdata-sections, not a linked binary", path);
  size_t shstrndx = 0, nsections = 0;
  if (elf_getshdrstrndx(elf, &shstrndx) != 0 || elf_getshdrnum(elf, &nsections) != 0)
    return elf_error(path, "section headers");

  Object obj;
  obj.path = path;
  obj.sections.resize(nsections);
  size_t symtab_index = 0;
  for (Elf_Scn* scn = nullptr; (scn = elf_nextscn(elf, scn));) {
    GElf_Shdr sh;
    if (!gelf_getshdr(scn, &sh)) return elf_error(path, "section header");
    size_t i = elf_ndxscn(scn);
    Section& s = obj.sections[i];
    s.index = i;
    const char* name = elf_strptr(elf, shstrndx, sh.sh_name);
    s.name = name ? name : "";
    s.type = sh.sh_type;
    s.flags = sh.sh_flags;
    s.align = sh.sh_addralign ? sh.sh_addralign : 1;
    s.entsize = sh.sh_entsize;
    s.size = sh.sh_size;
    s.link = sh.sh_link;
    s.info = sh.sh_info;
    if (sh.sh_type == SHT_REL)
      return make_error(ErrorKind::unsupported, "{}: section {} uses SHT_REL relocations; x86-64 objects use RELA", path, s.name);
    // DWARF is read with libdw where it is needed (type_layout.cpp); the passes never look at
    // it, and in a big -g unit it is most of the object (SQLite: tens of MB, 10^6 relocations).
    if (is_debug_section(sh.sh_flags, s.name)) continue;
    if (sh.sh_type != SHT_NOBITS && sh.sh_size) {
      Elf_Data* d = elf_getdata(scn, nullptr);
      if (!d || d->d_size != sh.sh_size) return elf_error(path, "data of section " + s.name);
      auto* p = static_cast<const uint8_t*>(d->d_buf);
      s.data.assign(p, p + d->d_size);
    }
    if (sh.sh_type == SHT_SYMTAB) symtab_index = i;
  }
  if (!symtab_index) return make_error(ErrorKind::bad_patch, "{}: no symbol table (was it stripped?)", path);
  for (const Section& s : obj.sections)
    if (s.name.starts_with(".gnu.lto_") && !std::any_of(obj.sections.begin(), obj.sections.end(), [](const Section& x) {
          return x.type == SHT_PROGBITS && (x.flags & SHF_EXECINSTR) && x.size > 0;
        }))
      return make_error(ErrorKind::unsupported, "{}", lto_refusal(path));

  // Symbols.
  {
    Elf_Scn* scn = elf_getscn(elf, symtab_index);
    GElf_Shdr sh;
    gelf_getshdr(scn, &sh);
    Elf_Data* d = elf_getdata(scn, nullptr);
    size_t n = sh.sh_entsize ? sh.sh_size / sh.sh_entsize : 0;
    obj.symbols.resize(n);
    for (size_t i = 0; i < n; ++i) {
      GElf_Sym sym;
      if (!gelf_getsym(d, static_cast<int>(i), &sym)) return elf_error(path, "symbol");
      Symbol& s = obj.symbols[i];
      s.index = i;
      const char* name = elf_strptr(elf, sh.sh_link, sym.st_name);
      s.name = name ? name : "";
      s.type = GELF_ST_TYPE(sym.st_info);
      s.bind = GELF_ST_BIND(sym.st_info);
      s.other = sym.st_other;
      s.shndx = sym.st_shndx;
      s.value = sym.st_value;
      s.size = sym.st_size;
      if (s.shndx == SHN_XINDEX)
        return make_error(ErrorKind::unsupported, "{}: extended section indices (SHN_XINDEX) are not supported", path);
      if (s.type == STT_FILE && obj.source_file.empty()) obj.source_file = s.name;
      if (s.type == STT_SECTION && s.shndx < obj.sections.size()) {
        obj.sections[s.shndx].section_symbol = i;
        s.name = obj.sections[s.shndx].name;
      }
    }
  }

  // Relocations, attached to the section they apply to.
  for (Section& rs : obj.sections) {
    if (rs.type != SHT_RELA) continue;
    if (rs.info == 0 || rs.info >= obj.sections.size())
      return make_error(ErrorKind::bad_patch, "{}: {} applies to no section", path, rs.name);
    if (rs.link != symtab_index)
      return make_error(ErrorKind::bad_patch, "{}: {} uses another symbol table", path, rs.name);
    Section& target = obj.sections[rs.info];
    target.rela_index = rs.index;
    if (is_debug_section(target.flags, target.name)) continue;
    Elf_Data* d = elf_getdata(elf_getscn(elf, rs.index), nullptr);
    size_t n = rs.entsize ? rs.size / rs.entsize : 0;
    for (size_t i = 0; i < n; ++i) {
      GElf_Rela r;
      if (!gelf_getrela(d, static_cast<int>(i), &r)) return elf_error(path, "relocation in " + rs.name);
      size_t sym = GELF_R_SYM(r.r_info);
      if (sym >= obj.symbols.size())
        return make_error(ErrorKind::bad_patch, "{}: {} entry {} names symbol {} out of range", path, rs.name, i, sym);
      target.relocations.push_back({r.r_offset, static_cast<uint32_t>(GELF_R_TYPE(r.r_info)), sym, r.r_addend});
    }
  }
  obj.index_symbols();
  return obj;
}

}  // namespace lg::builder
