#include "elf/elf_file.h"

#include <elf.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <mutex>

#include "common/hex.h"
#include "elf/sympos.h"

namespace lg {

namespace {

// libelf needs elf_version() once per process before anything else.
bool init_libelf() {
  static std::once_flag once;
  static bool ok = false;
  std::call_once(once, [] { ok = elf_version(EV_CURRENT) != EV_NONE; });
  return ok;
}

std::string elf_error_text() {
  const char* e = elf_errmsg(-1);
  return e ? e : "unknown libelf error";
}

constexpr uint64_t kPageSize = 4096;

bool range_ok(uint64_t off, uint64_t len, uint64_t total) { return off <= total && len <= total - off; }

}  // namespace

ElfFile::ElfFile(ElfFile&& o) noexcept
    : path_(std::move(o.path_)),
      fd_(std::move(o.fd_)),
      bytes_(std::move(o.bytes_)),
      elf_(std::exchange(o.elf_, nullptr)),
      ehdr_(o.ehdr_),
      sections_(std::move(o.sections_)),
      symbols_(std::move(o.symbols_)),
      dynsyms_(std::move(o.dynsyms_)),
      has_symtab_(o.has_symtab_) {}

ElfFile& ElfFile::operator=(ElfFile&& o) noexcept {
  if (this != &o) {
    if (elf_) elf_end(elf_);
    path_ = std::move(o.path_);
    fd_ = std::move(o.fd_);
    bytes_ = std::move(o.bytes_);
    elf_ = std::exchange(o.elf_, nullptr);
    ehdr_ = o.ehdr_;
    sections_ = std::move(o.sections_);
    symbols_ = std::move(o.symbols_);
    dynsyms_ = std::move(o.dynsyms_);
    has_symtab_ = o.has_symtab_;
  }
  return *this;
}

ElfFile::~ElfFile() {
  if (elf_) elf_end(elf_);
}

Result<ElfFile> ElfFile::open(const std::string& path) {
  if (!init_libelf()) return make_error(ErrorKind::internal, "libelf initialisation failed: {}", elf_error_text());
  ElfFile f;
  f.path_ = path;
  f.fd_ = UniqueFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!f.fd_.valid()) return make_errno_error(ErrorKind::not_found, "cannot open ELF file {}", path);
  struct stat st {};
  if (fstat(f.fd_.get(), &st) != 0) return make_errno_error(ErrorKind::io, "stat {}", path);
  if (!S_ISREG(st.st_mode)) return make_error(ErrorKind::invalid_argument, "{} is not a regular file", path);
  f.elf_ = elf_begin(f.fd_.get(), ELF_C_READ_MMAP, nullptr);
  if (!f.elf_) return make_error(ErrorKind::invalid_argument, "{}: not a readable ELF file: {}", path, elf_error_text());
  LG_TRY_VOID(f.load());
  return f;
}

Result<ElfFile> ElfFile::from_bytes(std::vector<uint8_t> bytes, std::string name) {
  if (!init_libelf()) return make_error(ErrorKind::internal, "libelf initialisation failed: {}", elf_error_text());
  if (bytes.empty()) return make_error(ErrorKind::invalid_argument, "{}: empty file, not ELF", name);
  ElfFile f;
  f.path_ = std::move(name);
  f.bytes_ = std::move(bytes);
  f.elf_ = elf_memory(reinterpret_cast<char*>(f.bytes_.data()), f.bytes_.size());
  if (!f.elf_) return make_error(ErrorKind::invalid_argument, "{}: not a readable ELF file: {}", f.path_, elf_error_text());
  LG_TRY_VOID(f.load());
  return f;
}

Result<void> ElfFile::load() {
  if (elf_kind(elf_) != ELF_K_ELF)
    return make_error(ErrorKind::invalid_argument, "{}: not an ELF file (bad magic or an archive)", path_);
  // The whole image must be addressable: section_data() and read_vaddr() slice it directly.
  size_t raw_size = 0;
  char* raw = elf_rawfile(elf_, &raw_size);
  if (!raw) {
    // libelf could not mmap the file and did not read it whole: read it ourselves.
    if (!fd_.valid()) return make_error(ErrorKind::io, "{}: cannot access the raw ELF image: {}", path_, elf_error_text());
    struct stat st {};
    if (fstat(fd_.get(), &st) != 0) return make_errno_error(ErrorKind::io, "stat {}", path_);
    std::vector<uint8_t> buf(static_cast<size_t>(st.st_size));
    size_t got = 0;
    while (got < buf.size()) {
      ssize_t n = pread(fd_.get(), buf.data() + got, buf.size() - got, static_cast<off_t>(got));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return make_errno_error(ErrorKind::io, "read {}", path_);
      if (n == 0) break;
      got += static_cast<size_t>(n);
    }
    buf.resize(got);
    elf_end(elf_);
    elf_ = nullptr;
    bytes_ = std::move(buf);
    if (bytes_.empty()) return make_error(ErrorKind::invalid_argument, "{}: empty file, not ELF", path_);
    elf_ = elf_memory(reinterpret_cast<char*>(bytes_.data()), bytes_.size());
    if (!elf_) return make_error(ErrorKind::invalid_argument, "{}: not a readable ELF file: {}", path_, elf_error_text());
    if (elf_kind(elf_) != ELF_K_ELF) return make_error(ErrorKind::invalid_argument, "{}: not an ELF file", path_);
  }
  if (!gelf_getehdr(elf_, &ehdr_))
    return make_error(ErrorKind::invalid_argument, "{}: malformed ELF header: {}", path_, elf_error_text());

  size_t shnum = 0, shstrndx = 0;
  if (elf_getshdrnum(elf_, &shnum) != 0)
    return make_error(ErrorKind::invalid_argument, "{}: malformed section header count: {}", path_, elf_error_text());
  bool have_shstr = elf_getshdrstrndx(elf_, &shstrndx) == 0 && shstrndx < shnum;
  uint64_t file_size = 0;
  {
    size_t n = 0;
    if (!elf_rawfile(elf_, &n)) return make_error(ErrorKind::io, "{}: cannot access the raw ELF image", path_);
    file_size = n;
  }
  if (shnum > 0 && !range_ok(ehdr_.e_shoff, static_cast<uint64_t>(shnum) * ehdr_.e_shentsize, file_size))
    return make_error(ErrorKind::invalid_argument, "{}: section header table lies outside the file (truncated?)", path_);

  sections_.clear();
  sections_.reserve(shnum);
  for (size_t i = 0; i < shnum; ++i) {
    Elf_Scn* scn = elf_getscn(elf_, i);
    GElf_Shdr sh;
    if (!scn || !gelf_getshdr(scn, &sh))
      return make_error(ErrorKind::invalid_argument, "{}: malformed section header {}: {}", path_, i, elf_error_text());
    ElfSection s;
    s.index = i;
    if (have_shstr && i != 0) {
      const char* n = elf_strptr(elf_, shstrndx, sh.sh_name);
      if (n) s.name = n;
    }
    s.type = sh.sh_type;
    s.flags = sh.sh_flags;
    s.addr = sh.sh_addr;
    s.offset = sh.sh_offset;
    s.size = sh.sh_size;
    s.align = sh.sh_addralign;
    s.entsize = sh.sh_entsize;
    s.link = sh.sh_link;
    s.info = sh.sh_info;
    sections_.push_back(std::move(s));
  }

  // Symbol tables. Entry 0 (the null symbol) is kept so that symbols()[i].index == i, which is
  // what relocations (r_sym) index.
  auto read_symtab = [&](uint32_t type, std::vector<ElfSymbol>& out) -> Result<bool> {
    for (const ElfSection& s : sections_) {
      if (s.type != type) continue;
      if (s.size == 0) return true;
      size_t symsz = gelf_fsize(elf_, ELF_T_SYM, 1, EV_CURRENT);
      if (symsz == 0 || s.entsize != symsz)
        return make_error(ErrorKind::invalid_argument, "{}: symbol table {} has entry size {}, expected {}", path_, s.name,
                          s.entsize, symsz);
      if (!range_ok(s.offset, s.size, file_size))
        return make_error(ErrorKind::invalid_argument, "{}: symbol table {} lies outside the file (truncated?)", path_, s.name);
      if (s.link >= sections_.size() || sections_[s.link].type != SHT_STRTAB)
        return make_error(ErrorKind::invalid_argument, "{}: symbol table {} has no valid string table (sh_link {})", path_,
                          s.name, s.link);
      Elf_Data* data = elf_getdata(elf_getscn(elf_, s.index), nullptr);
      if (!data) return make_error(ErrorKind::invalid_argument, "{}: cannot read {}: {}", path_, s.name, elf_error_text());
      size_t count = data->d_size / symsz;
      out.reserve(count);
      for (size_t i = 0; i < count; ++i) {
        GElf_Sym sym;
        if (!gelf_getsym(data, static_cast<int>(i), &sym))
          return make_error(ErrorKind::invalid_argument, "{}: malformed symbol {} in {}", path_, i, s.name);
        ElfSymbol e;
        if (sym.st_name != 0) {
          const char* n = elf_strptr(elf_, s.link, sym.st_name);
          if (!n)
            return make_error(ErrorKind::invalid_argument, "{}: symbol {} of {} has a name outside its string table", path_, i,
                              s.name);
          e.name = n;
        }
        e.value = sym.st_value;
        e.size = sym.st_size;
        e.type = GELF_ST_TYPE(sym.st_info);
        e.bind = GELF_ST_BIND(sym.st_info);
        e.visibility = GELF_ST_VISIBILITY(sym.st_other);
        e.shndx = sym.st_shndx;
        e.index = i;
        out.push_back(std::move(e));
      }
      return true;
    }
    return false;
  };
  LG_TRY(bool has_sym, read_symtab(SHT_SYMTAB, symbols_));
  has_symtab_ = has_sym;
  LG_TRY(bool has_dyn, read_symtab(SHT_DYNSYM, dynsyms_));
  if (!has_symtab_ && has_dyn) symbols_ = dynsyms_;
  return ok_result();
}

bool ElfFile::is_x86_64() const {
  return ehdr_.e_ident[EI_CLASS] == ELFCLASS64 && ehdr_.e_ident[EI_DATA] == ELFDATA2LSB && ehdr_.e_machine == EM_X86_64;
}

namespace {

std::optional<std::string> find_build_id_in(Elf_Data* data) {
  if (!data) return std::nullopt;
  size_t off = 0;
  GElf_Nhdr nh;
  size_t name_off = 0, desc_off = 0;
  while (off < data->d_size) {
    size_t next = gelf_getnote(data, off, &nh, &name_off, &desc_off);
    if (next == 0 || next <= off) break;
    const char* base = static_cast<const char*>(data->d_buf);
    if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 && std::memcmp(base + name_off, "GNU", 4) == 0 &&
        nh.n_descsz > 0) {
      return to_hex(std::span(reinterpret_cast<const uint8_t*>(base + desc_off), nh.n_descsz));
    }
    off = next;
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string> ElfFile::build_id() const {
  for (const ElfSegment& p : segments()) {
    if (p.type != PT_NOTE || p.filesz == 0) continue;
    // Note segments are 4- or 8-aligned; libelf picks the note layout from the alignment.
    Elf_Data* d = elf_getdata_rawchunk(elf_, static_cast<int64_t>(p.offset), p.filesz,
                                       p.align == 8 ? ELF_T_NHDR8 : ELF_T_NHDR);
    if (auto id = find_build_id_in(d)) return id;
  }
  for (const ElfSection& s : sections_) {
    if (s.type != SHT_NOTE) continue;
    Elf_Scn* scn = elf_getscn(elf_, s.index);
    if (!scn) continue;
    if (auto id = find_build_id_in(elf_getdata(scn, nullptr))) return id;
  }
  return std::nullopt;
}

std::optional<std::string> ElfFile::soname() const {
  // Preferred: the .dynamic section and its linked string table.
  for (const ElfSection& s : sections_) {
    if (s.type != SHT_DYNAMIC) continue;
    Elf_Scn* scn = elf_getscn(elf_, s.index);
    Elf_Data* d = scn ? elf_getdata(scn, nullptr) : nullptr;
    size_t dynsz = gelf_fsize(elf_, ELF_T_DYN, 1, EV_CURRENT);
    if (!d || dynsz == 0) return std::nullopt;
    for (size_t i = 0; i < d->d_size / dynsz; ++i) {
      GElf_Dyn dyn;
      if (!gelf_getdyn(d, static_cast<int>(i), &dyn) || dyn.d_tag == DT_NULL) break;
      if (dyn.d_tag == DT_SONAME) {
        const char* n = elf_strptr(elf_, s.link, dyn.d_un.d_val);
        if (n) return std::string(n);
        return std::nullopt;
      }
    }
    return std::nullopt;
  }
  // No section headers: PT_DYNAMIC, DT_STRTAB (a vaddr) and DT_STRSZ.
  for (const ElfSegment& p : segments()) {
    if (p.type != PT_DYNAMIC || p.filesz == 0) continue;
    Elf_Data* d = elf_getdata_rawchunk(elf_, static_cast<int64_t>(p.offset), p.filesz, ELF_T_DYN);
    size_t dynsz = gelf_fsize(elf_, ELF_T_DYN, 1, EV_CURRENT);
    if (!d || dynsz == 0) return std::nullopt;
    std::optional<uint64_t> soname_off, strtab, strsz;
    for (size_t i = 0; i < d->d_size / dynsz; ++i) {
      GElf_Dyn dyn;
      if (!gelf_getdyn(d, static_cast<int>(i), &dyn) || dyn.d_tag == DT_NULL) break;
      if (dyn.d_tag == DT_SONAME) soname_off = dyn.d_un.d_val;
      if (dyn.d_tag == DT_STRTAB) strtab = dyn.d_un.d_ptr;
      if (dyn.d_tag == DT_STRSZ) strsz = dyn.d_un.d_val;
    }
    if (!soname_off || !strtab || !strsz || *soname_off >= *strsz) return std::nullopt;
    auto bytes = read_vaddr(*strtab + *soname_off, static_cast<size_t>(std::min<uint64_t>(*strsz - *soname_off, 4096)));
    if (!bytes) return std::nullopt;
    auto end = std::find(bytes->begin(), bytes->end(), 0);
    if (end == bytes->end()) return std::nullopt;
    return std::string(bytes->begin(), end);
  }
  return std::nullopt;
}

std::vector<ElfSegment> ElfFile::segments() const {
  std::vector<ElfSegment> out;
  size_t n = 0;
  if (elf_getphdrnum(elf_, &n) != 0) return out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    GElf_Phdr ph;
    if (!gelf_getphdr(elf_, static_cast<int>(i), &ph)) break;
    out.push_back(ElfSegment{ph.p_type, ph.p_flags, ph.p_offset, ph.p_vaddr, ph.p_filesz, ph.p_memsz, ph.p_align});
  }
  return out;
}

const ElfSection* ElfFile::section_by_name(std::string_view name) const {
  for (const ElfSection& s : sections_)
    if (s.index != 0 && s.name == name) return &s;
  return nullptr;
}

Result<std::span<const uint8_t>> ElfFile::section_data(size_t index) const {
  if (index >= sections_.size())
    return make_error(ErrorKind::invalid_argument, "{}: no section with index {} (the file has {})", path_, index,
                      sections_.size());
  const ElfSection& s = sections_[index];
  if (s.type == SHT_NOBITS || s.type == SHT_NULL) return std::span<const uint8_t>();
  size_t raw_size = 0;
  const char* raw = elf_rawfile(elf_, &raw_size);
  if (!raw) return make_error(ErrorKind::io, "{}: cannot access the raw ELF image", path_);
  if (!range_ok(s.offset, s.size, raw_size))
    return make_error(ErrorKind::invalid_argument,
                      "{}: section {} [{}] (offset {:#x}, size {:#x}) lies outside the file of {:#x} bytes (truncated?)",
                      path_, s.name, index, s.offset, s.size, raw_size);
  return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(raw) + s.offset, static_cast<size_t>(s.size));
}

Result<ElfSymbol> ElfFile::find_symbol(std::string_view name, uint64_t sympos) const {
  auto matches_in = [&](const std::vector<ElfSymbol>& table) {
    std::vector<const ElfSymbol*> m;
    for (const ElfSymbol& s : table)
      if (counts_for_sympos(s.defined(), s.type) && s.name == name) m.push_back(&s);
    return m;
  };
  std::vector<const ElfSymbol*> found = matches_in(symbols_);
  const char* table = has_symtab_ ? ".symtab" : ".dynsym";
  if (found.empty() && has_symtab_) {
    found = matches_in(dynsyms_);
    table = ".dynsym";
  }
  if (found.empty())
    return make_error(ErrorKind::not_found, "symbol '{}' is not defined in {} (searched {})", name, path_,
                      has_symtab_ ? ".symtab and .dynsym" : ".dynsym; the file has no .symtab");
  LG_TRY(size_t i, choose_sympos(name, sympos, found.size(), fmt::format("{} ({})", path_, table)));
  return *found[i];
}

Result<std::vector<uint8_t>> ElfFile::read_vaddr(uint64_t vaddr, size_t len) const {
  size_t raw_size = 0;
  const char* raw = elf_rawfile(elf_, &raw_size);
  if (!raw) return make_error(ErrorKind::io, "{}: cannot access the raw ELF image", path_);
  for (const ElfSegment& p : segments()) {
    if (p.type != PT_LOAD) continue;
    if (vaddr < p.vaddr || vaddr - p.vaddr >= p.memsz) continue;
    uint64_t rel = vaddr - p.vaddr;
    if (len > p.memsz - rel)
      return make_error(ErrorKind::invalid_argument, "{}: [{:#x}, +{:#x}) runs past the end of its PT_LOAD segment",
                        path_, vaddr, len);
    if (!range_ok(p.offset, p.filesz, raw_size))
      return make_error(ErrorKind::invalid_argument, "{}: PT_LOAD at {:#x} lies outside the file (truncated?)", path_, p.vaddr);
    std::vector<uint8_t> out(len, 0);  // the part past p_filesz is zero-filled (.bss)
    if (rel < p.filesz) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(len, p.filesz - rel));
      std::memcpy(out.data(), raw + p.offset + rel, n);
    }
    return out;
  }
  return make_error(ErrorKind::not_found, "{}: address {:#x} is in no PT_LOAD segment", path_, vaddr);
}

std::optional<uint64_t> ElfFile::vaddr_of_offset(uint64_t offset) const {
  auto segs = segments();
  // Exact containment first, then the page-rounded start (mappings begin on page boundaries
  // while p_offset need not).
  for (const ElfSegment& p : segs) {
    if (p.type != PT_LOAD) continue;
    if (offset >= p.offset && offset - p.offset < std::max<uint64_t>(p.filesz, 1)) return p.vaddr + (offset - p.offset);
  }
  for (const ElfSegment& p : segs) {
    if (p.type != PT_LOAD) continue;
    uint64_t lo = p.offset & ~(kPageSize - 1);
    if (offset >= lo && offset < p.offset + std::max<uint64_t>(p.filesz, 1)) return p.vaddr - (p.offset - offset);
  }
  return std::nullopt;
}

}  // namespace lg
