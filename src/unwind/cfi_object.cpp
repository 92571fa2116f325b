#include "unwind/cfi_object.h"

#include <fcntl.h>
#include <gelf.h>

#include <algorithm>
#include <cstring>
#include <mutex>

#include "unwind/eh_frame_image.h"

namespace lg {

namespace {

void ensure_libelf_version() {
  static std::once_flag once;
  std::call_once(once, [] { elf_version(EV_CURRENT); });
}

Error elf_error(std::string_view what, const std::string& name) {
  return Error(ErrorKind::io, fmt::format("{} {}: {}", what, name, elf_errmsg(-1)));
}

}  // namespace

Result<std::unique_ptr<CfiObject>> CfiObject::open_file(const std::string& path, std::string name) {
  ensure_libelf_version();
  std::unique_ptr<CfiObject> obj(new CfiObject());
  obj->name_ = std::move(name);
  obj->fd_ = UniqueFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!obj->fd_.valid()) return make_errno_error(ErrorKind::io, "open {} (mapped as {})", path, obj->name_);
  obj->elf_ = elf_begin(obj->fd_.get(), ELF_C_READ_MMAP, nullptr);
  if (!obj->elf_) return elf_error("elf_begin", obj->name_);
  LG_TRY_VOID(obj->init());
  return obj;
}

Result<std::unique_ptr<CfiObject>> CfiObject::from_image(std::vector<uint8_t> image, std::string name) {
  ensure_libelf_version();
  std::unique_ptr<CfiObject> obj(new CfiObject());
  obj->name_ = std::move(name);
  obj->image_ = std::move(image);
  obj->elf_ = elf_memory(reinterpret_cast<char*>(obj->image_.data()), obj->image_.size());
  if (!obj->elf_) return elf_error("elf_memory", obj->name_);
  LG_TRY_VOID(obj->init());
  return obj;
}

Result<std::unique_ptr<CfiObject>> CfiObject::from_eh_frame(std::span<const uint8_t> eh_frame, uint64_t eh_frame_addr,
                                                             std::string name) {
  LG_TRY(auto obj, from_image(build_eh_frame_image(eh_frame, eh_frame_addr), std::move(name)));
  if (!obj->eh_cfi_)
    return make_error(ErrorKind::bad_patch, "the .eh_frame of {} at {:#x} ({} bytes) is not parsable CFI: {}",
                      obj->name_, eh_frame_addr, eh_frame.size(), dwarf_errmsg(-1));
  return obj;
}

Result<void> CfiObject::init() {
  if (elf_kind(elf_) != ELF_K_ELF) return make_error(ErrorKind::unsupported, "{} is not an ELF file", name_);
  GElf_Ehdr ehdr;
  if (!gelf_getehdr(elf_, &ehdr)) return elf_error("reading the ELF header of", name_);
  if (ehdr.e_ident[EI_CLASS] != ELFCLASS64 || ehdr.e_machine != EM_X86_64)
    return make_error(ErrorKind::unsupported, "{} is not an x86-64 ELF64 object", name_);

  size_t phnum = 0;
  if (elf_getphdrnum(elf_, &phnum) == 0) {
    for (size_t i = 0; i < phnum; ++i) {
      GElf_Phdr ph;
      if (gelf_getphdr(elf_, static_cast<int>(i), &ph) && ph.p_type == PT_LOAD)
        loads_.push_back({ph.p_offset, ph.p_vaddr, ph.p_filesz});
    }
  }

  // .eh_frame (through PT_GNU_EH_FRAME / .eh_frame_hdr when present, for a binary search).
  eh_cfi_ = dwarf_getcfi_elf(elf_);
  // .debug_frame only exists in unstripped objects; dwarf_begin_elf is skipped when it is absent.
  if (section_range(".debug_frame")) {
    dwarf_ = dwarf_begin_elf(elf_, DWARF_C_READ, nullptr);
    if (dwarf_) debug_cfi_ = dwarf_getcfi(dwarf_);
  }
  return {};
}

CfiObject::~CfiObject() {
  if (eh_cfi_) dwarf_cfi_end(eh_cfi_);
  if (dwarf_) dwarf_end(dwarf_);
  if (elf_) elf_end(elf_);
}

std::optional<std::pair<uint64_t, uint64_t>> CfiObject::section_range(const char* name) const {
  size_t shstrndx = 0;
  if (elf_getshdrstrndx(elf_, &shstrndx) != 0) return std::nullopt;
  for (Elf_Scn* scn = elf_nextscn(elf_, nullptr); scn; scn = elf_nextscn(elf_, scn)) {
    GElf_Shdr sh;
    if (!gelf_getshdr(scn, &sh)) continue;
    const char* n = elf_strptr(elf_, shstrndx, sh.sh_name);
    if (n && std::strcmp(n, name) == 0) return std::make_pair(uint64_t{sh.sh_addr}, uint64_t{sh.sh_size});
  }
  return std::nullopt;
}

Result<uint64_t> CfiObject::bias_for(uint64_t lo, uint64_t offset) const {
  constexpr uint64_t kPage = 4096;
  for (const Load& l : loads_) {
    // The kernel maps a segment from its offset rounded down to a page.
    if (offset >= (l.offset & ~(kPage - 1)) && offset < l.offset + std::max<uint64_t>(l.filesz, 1))
      return lo - offset - (l.vaddr - l.offset);
  }
  if (loads_.empty() && offset == 0) return lo;  // a synthesized image: addresses are run-time ones
  return make_error(ErrorKind::unsupported, "no PT_LOAD segment of {} covers file offset {:#x}", name_, offset);
}

FramePtr CfiObject::frame_at(uint64_t vaddr, std::string* why) const {
  std::string reasons;
  for (Dwarf_CFI* cfi : {eh_cfi_, debug_cfi_}) {
    if (!cfi) continue;
    Dwarf_Frame* frame = nullptr;
    if (dwarf_cfi_addrframe(cfi, vaddr, &frame) == 0) return FramePtr(frame);
    if (!reasons.empty()) reasons += "; ";
    reasons += fmt::format("{}: {}", cfi == eh_cfi_ ? ".eh_frame" : ".debug_frame", dwarf_errmsg(-1));
  }
  if (why) *why = reasons.empty() ? std::string("the object has no CFI") : reasons;
  return nullptr;
}

namespace {

// Appends the function symbols of [elf]'s symbol tables; returns whether it has a .symtab.
bool collect_symbols(Elf* elf, std::vector<CfiObject::Symbol>& out) {
  bool has_symtab = false;
  for (Elf_Scn* scn = elf_nextscn(elf, nullptr); scn; scn = elf_nextscn(elf, scn)) {
    GElf_Shdr sh;
    if (!gelf_getshdr(scn, &sh) || (sh.sh_type != SHT_SYMTAB && sh.sh_type != SHT_DYNSYM) || sh.sh_entsize == 0)
      continue;
    has_symtab |= sh.sh_type == SHT_SYMTAB;
    Elf_Data* data = elf_getdata(scn, nullptr);
    if (!data) continue;
    size_t count = sh.sh_size / sh.sh_entsize;
    for (size_t i = 0; i < count; ++i) {
      GElf_Sym sym;
      if (!gelf_getsym(data, static_cast<int>(i), &sym)) break;
      int type = GELF_ST_TYPE(sym.st_info);
      if ((type != STT_FUNC && type != STT_GNU_IFUNC) || sym.st_shndx == SHN_UNDEF || sym.st_value == 0) continue;
      const char* n = elf_strptr(elf, sh.sh_link, sym.st_name);
      if (!n || !*n) continue;
      out.push_back({sym.st_value, sym.st_size, n});
    }
  }
  return has_symtab;
}

// The GNU build-id note as lower-case hex, or "".
std::string build_id_of(Elf* elf) {
  for (Elf_Scn* scn = elf_nextscn(elf, nullptr); scn; scn = elf_nextscn(elf, scn)) {
    GElf_Shdr sh;
    if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_NOTE) continue;
    Elf_Data* data = elf_getdata(scn, nullptr);
    if (!data) continue;
    size_t off = 0, name_off = 0, desc_off = 0;
    GElf_Nhdr nh;
    while ((off = gelf_getnote(data, off, &nh, &name_off, &desc_off)) > 0) {
      const char* base = static_cast<const char*>(data->d_buf);
      if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 && std::memcmp(base + name_off, "GNU", 4) == 0) {
        std::string hex;
        for (size_t i = 0; i < nh.n_descsz; ++i)
          hex += fmt::format("{:02x}", static_cast<unsigned char>(base[desc_off + i]));
        return hex;
      }
    }
  }
  return {};
}

}  // namespace

void CfiObject::load_symbols() {
  symbols_loaded_ = true;
  bool has_symtab = collect_symbols(elf_, symbols_);
  // A stripped object: the distribution's separate debug file (Debian's *-dbg / *-dbgsym
  // packages) has the full .symtab at the same addresses, found by build-id.
  if (!has_symtab) {
    std::string id = build_id_of(elf_);
    if (id.size() > 2) {
      std::string path = fmt::format("/usr/lib/debug/.build-id/{}/{}.debug", id.substr(0, 2), id.substr(2));
      UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
      if (fd.valid()) {
        if (Elf* dbg = elf_begin(fd.get(), ELF_C_READ_MMAP, nullptr)) {
          collect_symbols(dbg, symbols_);
          elf_end(dbg);
        }
      }
    }
  }
  // Sorted by address; among aliases at one address prefer a sized one, then one without a
  // leading '_' (nanosleep over __nanosleep).
  std::sort(symbols_.begin(), symbols_.end(), [](const Symbol& a, const Symbol& b) {
    if (a.addr != b.addr) return a.addr < b.addr;
    if ((a.size != 0) != (b.size != 0)) return a.size != 0;
    bool au = a.name[0] == '_', bu = b.name[0] == '_';
    if (au != bu) return !au;
    return a.name < b.name;
  });
  symbols_.erase(std::unique(symbols_.begin(), symbols_.end(),
                             [](const Symbol& a, const Symbol& b) { return a.addr == b.addr; }),
                 symbols_.end());
}

std::optional<SymbolHit> CfiObject::symbol_at(uint64_t vaddr) {
  if (!symbols_loaded_) load_symbols();
  auto it = std::upper_bound(symbols_.begin(), symbols_.end(), vaddr,
                             [](uint64_t v, const Symbol& s) { return v < s.addr; });
  if (it == symbols_.begin()) return std::nullopt;
  --it;
  // Past the end of a sized symbol: code with no symbol of its own (a stripped local function);
  // naming the preceding function would mislead.
  if (it->size != 0 && vaddr >= it->addr + it->size) return std::nullopt;
  return SymbolHit{it->name, vaddr - it->addr};
}

}  // namespace lg
