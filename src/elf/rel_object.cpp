#include "elf/rel_object.h"

#include <cstring>

#ifndef SHT_X86_64_UNWIND
#define SHT_X86_64_UNWIND 0x70000001
#endif

namespace lg::elf {

namespace {

// [off, off+size) lies inside a buffer of [total] bytes, without overflow.
bool in_bounds(uint64_t off, uint64_t size, uint64_t total) { return off <= total && size <= total - off; }

template <class T>
T read_at(std::span<const uint8_t> d, uint64_t off) {
  T v;
  std::memcpy(&v, d.data() + off, sizeof v);
  return v;
}

// A string of a table whose last byte is NUL (checked by parse), so any offset inside it is
// terminated inside it.
std::string_view string_at(std::span<const uint8_t> table, uint64_t off) {
  if (off >= table.size()) return {};
  return {reinterpret_cast<const char*>(table.data() + off)};
}

bool power_of_two_or_zero(uint64_t v) { return (v & (v - 1)) == 0; }

// Section types an allocated section may have: the loader copies or zero-fills them.
bool loadable_type(uint32_t t) {
  switch (t) {
    case SHT_PROGBITS:
    case SHT_NOBITS:
    case SHT_NOTE:
    case SHT_INIT_ARRAY:
    case SHT_FINI_ARRAY:
    case SHT_PREINIT_ARRAY:
    case SHT_X86_64_UNWIND:  // .eh_frame as some assemblers type it
      return true;
    default:
      return false;
  }
}

}  // namespace

Result<RelObject> RelObject::parse(std::span<const uint8_t> data, std::string label) {
  RelObject o;
  o.data_ = data;
  o.label_ = std::move(label);
  auto bad = [&](std::string what) { return Error(ErrorKind::bad_patch, fmt::format("{}: {}", o.label_, what)); };

  if (data.size() < sizeof(Elf64_Ehdr)) return bad(fmt::format("{} bytes is too small to be an ELF file", data.size()));
  if (data.size() > kMaxPatchFile) return bad(fmt::format("{} bytes is too large for a patch object", data.size()));
  auto eh = read_at<Elf64_Ehdr>(data, 0);
  if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0) return bad("not an ELF file (bad magic)");
  if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB || eh.e_machine != EM_X86_64)
    return bad(fmt::format("not an ELF64 little-endian x86-64 object (class {}, data {}, machine {})", eh.e_ident[EI_CLASS],
                           eh.e_ident[EI_DATA], eh.e_machine));
  if (eh.e_ident[EI_VERSION] != EV_CURRENT || eh.e_version != EV_CURRENT)
    return bad(fmt::format("ELF version {}/{} is not EV_CURRENT", eh.e_ident[EI_VERSION], eh.e_version));
  if (eh.e_type != ET_REL)
    return bad(fmt::format("ELF type {} is not ET_REL: a patch is a relocatable object (compile with `-c -fPIC`, do not link it)",
                           eh.e_type));
  if (eh.e_ehsize != sizeof(Elf64_Ehdr)) return bad(fmt::format("e_ehsize is {}, not {}", eh.e_ehsize, sizeof(Elf64_Ehdr)));
  if (eh.e_shentsize != sizeof(Elf64_Shdr))
    return bad(fmt::format("e_shentsize is {}, not {} (the size of an ELF64 section header)", eh.e_shentsize, sizeof(Elf64_Shdr)));

  // 1. With >= SHN_LORESERVE sections, e_shnum is 0 and the count lives in section 0's
  //    sh_size; likewise e_shstrndx == SHN_XINDEX defers to section 0's sh_link (gABI).
  if (eh.e_shoff == 0 || !in_bounds(eh.e_shoff, sizeof(Elf64_Shdr), data.size()))
    return bad(fmt::format("the section header table (offset {:#x}) lies outside the file of {} bytes", eh.e_shoff, data.size()));
  auto sh0 = read_at<Elf64_Shdr>(data, eh.e_shoff);
  uint64_t shnum = eh.e_shnum ? eh.e_shnum : sh0.sh_size;
  uint64_t shstrndx = eh.e_shstrndx == SHN_XINDEX ? sh0.sh_link : eh.e_shstrndx;
  if (shnum == 0 || shnum > data.size() / sizeof(Elf64_Shdr) || !in_bounds(eh.e_shoff, shnum * sizeof(Elf64_Shdr), data.size()))
    return bad(fmt::format("the section header table ({} entries at {:#x}) lies outside the file of {} bytes", shnum, eh.e_shoff,
                           data.size()));
  if (shstrndx == 0 || shstrndx >= shnum) return bad(fmt::format("section name table index {} does not exist", shstrndx));

  std::vector<Elf64_Shdr> hdrs(shnum);
  for (uint64_t i = 0; i < shnum; ++i) {
    hdrs[i] = read_at<Elf64_Shdr>(data, eh.e_shoff + i * sizeof(Elf64_Shdr));
    const auto& h = hdrs[i];
    if (h.sh_type != SHT_NOBITS && h.sh_type != SHT_NULL && !in_bounds(h.sh_offset, h.sh_size, data.size()))
      return bad(fmt::format("section [{}] (offset {:#x}, size {:#x}) lies outside the file of {} bytes (truncated?)", i, h.sh_offset,
                             h.sh_size, data.size()));
    if (!power_of_two_or_zero(h.sh_addralign))
      return bad(fmt::format("section [{}] has alignment {}, which is not a power of two", i, h.sh_addralign));
  }
  const auto& shs = hdrs[shstrndx];
  if (shs.sh_type != SHT_STRTAB || shs.sh_size == 0 || data[shs.sh_offset + shs.sh_size - 1] != 0)
    return bad(fmt::format("section name table [{}] is not a NUL-terminated SHT_STRTAB", shstrndx));
  auto shstr = data.subspan(shs.sh_offset, shs.sh_size);
  o.sections_.resize(shnum);
  for (uint64_t i = 0; i < shnum; ++i) {
    o.sections_[i].hdr = hdrs[i];
    if (hdrs[i].sh_name >= shstr.size()) return bad(fmt::format("section [{}] has a name outside the section name table", i));
    o.sections_[i].name = std::string(string_at(shstr, hdrs[i].sh_name));
  }

  // Section types: a corrupted type must not make the loader skip relocations or load a table.
  int symtab = -1;
  for (uint64_t i = 1; i < shnum; ++i) {
    const auto& h = hdrs[i];
    const std::string& name = o.sections_[i].name;
    if (h.sh_type == SHT_REL)
      return bad(fmt::format("section {}: SHT_REL relocations are not used on x86-64 (SHT_RELA only)", name));
    bool named_rela = std::string_view(name).starts_with(".rela") || std::string_view(name).starts_with(".rel.");
    if ((named_rela || (h.sh_flags & SHF_INFO_LINK)) && h.sh_type != SHT_RELA && h.sh_type != SHT_GROUP)
      return bad(fmt::format("section {} has type {:#x}: its name or flags say relocations, so it must be SHT_RELA", name, h.sh_type));
    if ((h.sh_flags & SHF_ALLOC) && !loadable_type(h.sh_type))
      return bad(fmt::format("section {} is allocated (SHF_ALLOC) but has type {:#x}, which the loader cannot place", name, h.sh_type));
    if (h.sh_type == SHT_SYMTAB) {
      if (symtab >= 0) return bad("more than one symbol table");
      symtab = static_cast<int>(i);
    }
  }
  if (symtab < 0) return bad("no symbol table (was the object stripped?)");

  // Symbol table, its string table and extended indices.
  const auto& st = hdrs[symtab];
  if (st.sh_entsize != sizeof(Elf64_Sym) || st.sh_size % sizeof(Elf64_Sym) != 0 || st.sh_size == 0)
    return bad(fmt::format("malformed symbol table (entry size {}, size {})", st.sh_entsize, st.sh_size));
  if (st.sh_link == 0 || st.sh_link >= shnum || hdrs[st.sh_link].sh_type != SHT_STRTAB)
    return bad("the symbol table's sh_link is not a string table");
  const auto& strh = hdrs[st.sh_link];
  if (strh.sh_size == 0 || data[strh.sh_offset + strh.sh_size - 1] != 0) return bad("the symbol string table is not NUL-terminated");
  o.strtab_ = data.subspan(strh.sh_offset, strh.sh_size);
  size_t nsyms = st.sh_size / sizeof(Elf64_Sym);
  if (st.sh_info > nsyms) return bad(fmt::format("the symbol table's first global index {} is past its {} symbols", st.sh_info, nsyms));
  std::span<const uint8_t> xindex;
  for (uint64_t i = 0; i < shnum; ++i)
    if (hdrs[i].sh_type == SHT_SYMTAB_SHNDX && hdrs[i].sh_link == static_cast<uint32_t>(symtab))
      xindex = data.subspan(hdrs[i].sh_offset, hdrs[i].sh_size);
  o.symbols_.resize(nsyms);
  o.sym_shndx_.resize(nsyms);
  for (size_t i = 0; i < nsyms; ++i) {
    const auto s = o.symbols_[i] = read_at<Elf64_Sym>(data, st.sh_offset + i * sizeof(Elf64_Sym));
    if (s.st_name >= o.strtab_.size()) return bad(fmt::format("symbol #{} has a name outside the string table", i));
    uint32_t shndx = s.st_shndx;
    if (i == 0 && shndx != SHN_UNDEF) return bad("symbol #0 is not the null symbol");
    if (shndx == SHN_XINDEX) {
      if (!in_bounds(i * 4, 4, xindex.size())) return bad(fmt::format("symbol #{} needs an extended section index that is missing", i));
      shndx = read_at<uint32_t>(xindex, i * 4);
    } else if (shndx >= SHN_LORESERVE) {
      // Only SHN_ABS and SHN_COMMON have a meaning the loader knows; anything else in the
      // reserved range (SHN_X86_64_LCOMMON from -mcmodel=large, ...) would index nothing.
      if (shndx != SHN_ABS && shndx != SHN_COMMON)
        return Error(ErrorKind::unsupported, fmt::format("{}: symbol '{}' uses the reserved section index {:#x}, which the loader does not support",
                                                         o.label_, string_at(o.strtab_, s.st_name), shndx));
      o.sym_shndx_[i] = shndx;
      continue;
    }
    if (shndx != SHN_UNDEF && shndx >= shnum)
      return bad(fmt::format("symbol '{}' (#{}) is defined in section index {}, which does not exist", string_at(o.strtab_, s.st_name), i, shndx));
    o.sym_shndx_[i] = shndx;
    unsigned type = ELF64_ST_TYPE(s.st_info);
    if (shndx != SHN_UNDEF && type != STT_SECTION && type != STT_FILE) {
      uint64_t sec_size = hdrs[shndx].sh_size;
      if (s.st_value > sec_size || s.st_size > sec_size - s.st_value)
        return bad(fmt::format("symbol '{}' ([{:#x}, +{:#x}) in {}) lies outside its section of {:#x} bytes", string_at(o.strtab_, s.st_name),
                               s.st_value, s.st_size, o.sections_[shndx].name, sec_size));
    }
  }

  o.relas_.resize(shnum);
  o.rela_sec_.assign(shnum, 0);
  for (uint64_t i = 0; i < shnum; ++i) {
    const auto& h = hdrs[i];
    if (h.sh_type != SHT_RELA) continue;
    const auto& name = o.sections_[i].name;
    if (h.sh_entsize != sizeof(Elf64_Rela) || h.sh_size % sizeof(Elf64_Rela) != 0)
      return bad(fmt::format("relocation section {} has entry size {} and size {}, expected multiples of {}", name, h.sh_entsize, h.sh_size,
                             sizeof(Elf64_Rela)));
    if (h.sh_link != static_cast<uint32_t>(symtab))
      return bad(fmt::format("relocation section {} is not linked to the symbol table (sh_link {})", name, h.sh_link));
    if (h.sh_info == 0 || h.sh_info >= shnum || h.sh_info == i)
      return bad(fmt::format("relocation section {} applies to section index {}, which does not exist", name, h.sh_info));
    uint32_t target_type = hdrs[h.sh_info].sh_type;
    if (target_type == SHT_RELA || target_type == SHT_SYMTAB || target_type == SHT_STRTAB || target_type == SHT_NULL)
      return bad(fmt::format("relocation section {} applies to {}, which is not a section of code or data", name, o.sections_[h.sh_info].name));
    auto& out = o.relas_[h.sh_info];
    if (!o.rela_sec_[h.sh_info]) o.rela_sec_[h.sh_info] = i;
    for (uint64_t k = 0; k < h.sh_size / sizeof(Elf64_Rela); ++k) {
      auto r = read_at<Elf64_Rela>(data, h.sh_offset + k * sizeof(Elf64_Rela));
      if (ELF64_R_SYM(r.r_info) >= nsyms)
        return bad(fmt::format("relocation #{} in {} refers to symbol index {}, past the symbol table", k, name, ELF64_R_SYM(r.r_info)));
      out.push_back(r);
    }
  }
  return o;
}

std::string_view RelObject::symbol_name(size_t index) const {
  const auto& s = symbols_[index];
  if (ELF64_ST_TYPE(s.st_info) == STT_SECTION && sym_shndx_[index] < sections_.size()) return sections_[sym_shndx_[index]].name;
  return string_at(strtab_, s.st_name);
}

std::string RelObject::describe_symbol(size_t index) const {
  if (index >= symbols_.size()) return fmt::format("symbol #{}", index);
  if (ELF64_ST_TYPE(symbols_[index].st_info) == STT_SECTION && sym_shndx_[index] < sections_.size())
    return fmt::format("section {}", sections_[sym_shndx_[index]].name);
  auto n = symbol_name(index);
  return n.empty() ? fmt::format("symbol #{}", index) : fmt::format("'{}'", n);
}

std::span<const uint8_t> RelObject::section_data(size_t index) const {
  const auto& h = sections_[index].hdr;
  if (h.sh_type == SHT_NOBITS || h.sh_type == SHT_NULL) return {};
  return data_.subspan(h.sh_offset, h.sh_size);
}

int RelObject::find_section(std::string_view name) const {
  for (size_t i = 0; i < sections_.size(); ++i)
    if (sections_[i].name == name) return static_cast<int>(i);
  return -1;
}

}  // namespace lg::elf
