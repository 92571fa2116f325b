#include "agent/elf_reader.h"

#include <cstring>

namespace lg::agent {

namespace {

// [off, off+size) lies inside a buffer of [total] bytes, without overflow.
bool in_bounds(uint64_t off, uint64_t size, uint64_t total) { return off <= total && size <= total - off; }

template <class T>
T read_at(std::span<const uint8_t> d, uint64_t off) {
  T v;
  std::memcpy(&v, d.data() + off, sizeof v);
  return v;
}

std::string_view string_at(std::span<const uint8_t> table, uint64_t off) {
  if (off >= table.size()) return {};
  const char* s = reinterpret_cast<const char*>(table.data() + off);
  size_t max = table.size() - off;
  size_t n = strnlen(s, max);
  if (n == max) return {};  // not NUL-terminated inside the table
  return {s, n};
}

}  // namespace

Result<RelObject> RelObject::parse(std::span<const uint8_t> data, std::string label) {
  RelObject o;
  o.data_ = data;
  o.label_ = std::move(label);
  auto bad = [&](std::string what) { return Error(ErrorKind::bad_patch, fmt::format("{}: {}", o.label_, what)); };

  if (data.size() < sizeof(Elf64_Ehdr)) return bad("too small to be an ELF file");
  auto eh = read_at<Elf64_Ehdr>(data, 0);
  if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0) return bad("not an ELF file");
  if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB)
    return bad("not a little-endian ELF64 file");
  if (eh.e_type != ET_REL) return bad("not a relocatable object (ET_REL); compile the patch with -c");
  if (eh.e_machine != EM_X86_64) return bad("not an x86-64 object");
  if (eh.e_shentsize != sizeof(Elf64_Shdr)) return bad("unexpected section header size");

  // 1. With >= SHN_LORESERVE sections, e_shnum is 0 and the count lives in section 0's
  //    sh_size; likewise e_shstrndx == SHN_XINDEX defers to section 0's sh_link (gABI).
  if (!in_bounds(eh.e_shoff, sizeof(Elf64_Shdr), data.size())) return bad("section headers out of the file");
  auto sh0 = read_at<Elf64_Shdr>(data, eh.e_shoff);
  uint64_t shnum = eh.e_shnum ? eh.e_shnum : sh0.sh_size;
  uint64_t shstrndx = eh.e_shstrndx == SHN_XINDEX ? sh0.sh_link : eh.e_shstrndx;
  if (shnum == 0 || shnum > 1'000'000 || !in_bounds(eh.e_shoff, shnum * sizeof(Elf64_Shdr), data.size()))
    return bad("section header table out of the file");
  if (shstrndx >= shnum) return bad("bad section name table index");

  std::vector<Elf64_Shdr> hdrs(shnum);
  for (uint64_t i = 0; i < shnum; ++i) {
    hdrs[i] = read_at<Elf64_Shdr>(data, eh.e_shoff + i * sizeof(Elf64_Shdr));
    if (hdrs[i].sh_type != SHT_NOBITS && hdrs[i].sh_type != SHT_NULL &&
        !in_bounds(hdrs[i].sh_offset, hdrs[i].sh_size, data.size()))
      return bad(fmt::format("section {} lies outside the file", i));
  }
  auto shstr = data.subspan(hdrs[shstrndx].sh_offset, hdrs[shstrndx].sh_type == SHT_NOBITS ? 0 : hdrs[shstrndx].sh_size);
  o.sections_.resize(shnum);
  for (uint64_t i = 0; i < shnum; ++i) {
    o.sections_[i].hdr = hdrs[i];
    o.sections_[i].name = std::string(string_at(shstr, hdrs[i].sh_name));
  }

  // Symbol table (exactly one in a relocatable object), its string table and extended indices.
  int symtab = -1;
  std::span<const uint8_t> xindex;
  for (uint64_t i = 0; i < shnum; ++i) {
    if (hdrs[i].sh_type == SHT_SYMTAB) {
      if (symtab >= 0) return bad("more than one symbol table");
      symtab = static_cast<int>(i);
    }
    if (hdrs[i].sh_type == SHT_REL) return bad(fmt::format("section {}: SHT_REL relocations are not used on x86-64", o.sections_[i].name));
  }
  if (symtab < 0) return bad("no symbol table (was the object stripped?)");
  const auto& st = hdrs[symtab];
  if (st.sh_entsize != sizeof(Elf64_Sym) || st.sh_size % sizeof(Elf64_Sym) != 0) return bad("malformed symbol table");
  if (st.sh_link >= shnum || hdrs[st.sh_link].sh_type != SHT_STRTAB) return bad("symbol table has no string table");
  o.strtab_ = data.subspan(hdrs[st.sh_link].sh_offset, hdrs[st.sh_link].sh_size);
  for (uint64_t i = 0; i < shnum; ++i)
    if (hdrs[i].sh_type == SHT_SYMTAB_SHNDX && hdrs[i].sh_link == static_cast<uint32_t>(symtab))
      xindex = data.subspan(hdrs[i].sh_offset, hdrs[i].sh_size);
  size_t nsyms = st.sh_size / sizeof(Elf64_Sym);
  o.symbols_.resize(nsyms);
  o.sym_shndx_.resize(nsyms);
  for (size_t i = 0; i < nsyms; ++i) {
    o.symbols_[i] = read_at<Elf64_Sym>(data, st.sh_offset + i * sizeof(Elf64_Sym));
    uint32_t shndx = o.symbols_[i].st_shndx;
    if (shndx == SHN_XINDEX) {
      if (!in_bounds(i * 4, 4, xindex.size())) return bad(fmt::format("symbol {} needs an extended section index that is missing", i));
      shndx = read_at<uint32_t>(xindex, i * 4);
    } else if (shndx >= SHN_LORESERVE) {
      // Only SHN_ABS and SHN_COMMON have a meaning the loader knows; anything else in the
      // reserved range (SHN_X86_64_LCOMMON from -mcmodel=large, ...) would index nothing.
      if (shndx != SHN_ABS && shndx != SHN_COMMON)
        return bad(fmt::format("symbol {} uses the reserved section index {:#x}, which the loader does not support", i, shndx));
      o.sym_shndx_[i] = shndx;
      continue;
    }
    if (shndx != SHN_UNDEF && shndx >= shnum) return bad(fmt::format("symbol {} refers to section {} which does not exist", i, shndx));
    o.sym_shndx_[i] = shndx;
    if (o.symbols_[i].st_name >= o.strtab_.size()) return bad(fmt::format("symbol {} has a name outside the string table", i));
  }

  o.relas_.resize(shnum);
  for (uint64_t i = 0; i < shnum; ++i) {
    const auto& h = hdrs[i];
    if (h.sh_type != SHT_RELA) continue;
    const auto& name = o.sections_[i].name;
    if (h.sh_entsize != sizeof(Elf64_Rela) || h.sh_size % sizeof(Elf64_Rela) != 0) return bad(fmt::format("section {}: malformed relocations", name));
    if (h.sh_link != static_cast<uint32_t>(symtab)) return bad(fmt::format("section {}: relocations use another symbol table", name));
    if (h.sh_info == 0 || h.sh_info >= shnum) return bad(fmt::format("section {}: relocations for a section that does not exist", name));
    auto& out = o.relas_[h.sh_info];
    for (uint64_t k = 0; k < h.sh_size / sizeof(Elf64_Rela); ++k) {
      auto r = read_at<Elf64_Rela>(data, h.sh_offset + k * sizeof(Elf64_Rela));
      if (ELF64_R_SYM(r.r_info) >= nsyms) return bad(fmt::format("section {}: relocation {} uses symbol {} which does not exist", name, k, ELF64_R_SYM(r.r_info)));
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

}  // namespace lg::agent
