#include "elf/patch_checks.h"

#include <map>

#include "elf/eh_frame_check.h"
#include "x86/relocations.h"

namespace lg::elf {

namespace {

std::string at(const RelObject& o, size_t sec, uint64_t off) { return fmt::format("{}+{:#x}", o.sections()[sec].name, off); }

std::string plain_name(const RelObject& o, size_t i) {
  auto n = o.symbol_name(i);
  return n.empty() ? fmt::format("#{}", i) : std::string(n);
}

Result<void> check_symbols_and_sections(const RelObject& o) {
  for (size_t i = 1; i < o.symbols().size(); ++i) {
    unsigned type = ELF64_ST_TYPE(o.symbols()[i].st_info);
    if (type == STT_TLS)
      return make_error(ErrorKind::unsupported, "{}: thread-local storage is not supported in patches (symbol {})", o.label(),
                        plain_name(o, i));
    if (type == STT_GNU_IFUNC && o.symbol_defined(i))
      return make_error(ErrorKind::unsupported, "{}: IFUNC definitions (STT_GNU_IFUNC) are not supported in patches (symbol {})",
                        o.label(), plain_name(o, i));
  }
  for (const auto& s : o.sections()) {
    if (!s.is_alloc()) continue;
    if (s.hdr.sh_flags & SHF_TLS)
      return make_error(ErrorKind::unsupported, "{}: thread-local storage is not supported in patches (section {})", o.label(), s.name);
    if (s.hdr.sh_addralign > kPageSize)
      return make_error(ErrorKind::unsupported, "{}: section {} wants alignment {} (more than a page, which the loader cannot give)",
                        o.label(), s.name, s.hdr.sh_addralign);
  }
  return ok_result();
}

Result<void> check_relocations(const RelObject& o) {
  const auto& secs = o.sections();
  for (size_t sec = 1; sec < secs.size(); ++sec) {
    const auto& target = secs[sec];
    if (!target.is_alloc()) continue;  // debug info and the like: never loaded
    std::map<uint64_t, uint32_t> seen;
    for (const auto& r : o.relocations_for(sec)) {
      uint32_t type = static_cast<uint32_t>(ELF64_R_TYPE(r.r_info));
      size_t sym = ELF64_R_SYM(r.r_info);
      const char* tname = x86::relocation_name(type);
      auto cls = x86::classify_relocation(type);
      if (cls == x86::RelocClass::tls || (sym != 0 && ELF64_ST_TYPE(o.symbols()[sym].st_info) == STT_TLS))
        return make_error(ErrorKind::unsupported, "{}: thread-local storage is not supported in patches ({} against {} at {})", o.label(),
                          tname, o.describe_symbol(sym), at(o, sec, r.r_offset));
      if (cls == x86::RelocClass::unknown)
        return make_error(ErrorKind::unsupported,
                          "{}: relocation {} (type {}) at {} against {} is not supported by the livegraft loader (compile the patch "
                          "with -fPIC and the default code model)",
                          o.label(), tname, type, at(o, sec, r.r_offset), o.describe_symbol(sym));
      if (type == R_X86_64_NONE) continue;
      if (target.hdr.sh_type == SHT_NOBITS)
        return make_error(ErrorKind::bad_patch, "{}: relocation {} at {} applies to {}, which has no contents (SHT_NOBITS)", o.label(),
                          tname, at(o, sec, r.r_offset), target.name);
      uint64_t width = x86::relocation_width(type);
      if (r.r_offset > target.hdr.sh_size || width > target.hdr.sh_size - r.r_offset)
        return make_error(ErrorKind::bad_patch, "{}: relocation {} at {} lies outside its section ({} bytes)", o.label(), tname,
                          at(o, sec, r.r_offset), target.hdr.sh_size);
      if (sym == 0)
        return make_error(ErrorKind::bad_patch, "{}: relocation {} at {} refers to the null symbol (index 0)", o.label(), tname,
                          at(o, sec, r.r_offset));
      uint32_t shndx = o.symbol_section(sym);
      if (shndx != SHN_UNDEF && shndx < SHN_LORESERVE && !secs[shndx].is_alloc())
        return make_error(ErrorKind::bad_patch, "{}: relocation {} at {} refers to {} in section {}, which is not loaded (no SHF_ALLOC)",
                          o.label(), tname, at(o, sec, r.r_offset), o.describe_symbol(sym), secs[shndx].name);
      if (!seen.emplace(r.r_offset, type).second)
        return make_error(ErrorKind::bad_patch, "{}: two relocations at {}", o.label(), at(o, sec, r.r_offset));
    }
  }
  return ok_result();
}

// FDEs of a file: pc_begin is 0 in the file and given by a relocation against patch code.
Result<void> check_fde_in_file(const RelObject& o, size_t eh, const std::map<uint64_t, const Elf64_Rela*>& relocs, const EhFrameFde& f) {
  auto it = relocs.find(f.pc_begin_field);
  if (it == relocs.end())
    return make_error(ErrorKind::bad_patch, "pc_begin at {} has no relocation: the FDE does not describe code of the patch", at(o, eh, f.pc_begin_field));
  const Elf64_Rela& r = *it->second;
  uint32_t type = static_cast<uint32_t>(ELF64_R_TYPE(r.r_info));
  int size = (f.encoding & 0x0f) == 0x03 || (f.encoding & 0x0f) == 0x0b ? 4 : (f.encoding & 0x0f) == 0x02 || (f.encoding & 0x0f) == 0x0a ? 2 : 8;
  bool pcrel = (f.encoding & 0x70) == 0x10;
  uint32_t want = pcrel ? (size == 4 ? R_X86_64_PC32 : size == 8 ? R_X86_64_PC64 : 0) : (size == 8 ? R_X86_64_64 : 0);
  if (type != want)
    return make_error(ErrorKind::bad_patch, "pc_begin at {} (encoding {:#04x}) carries relocation {}, which does not fit the encoding",
                      at(o, eh, f.pc_begin_field), f.encoding, x86::relocation_name(type));
  size_t sym = ELF64_R_SYM(r.r_info);
  uint32_t shndx = o.symbol_section(sym);
  if (shndx == SHN_UNDEF || shndx >= SHN_LORESERVE || !o.sections()[shndx].is_alloc() || !o.sections()[shndx].is_exec())
    return make_error(ErrorKind::bad_patch, "pc_begin at {} refers to {}, which is not executable code of the patch", at(o, eh, f.pc_begin_field),
                      o.describe_symbol(sym));
  const auto& text = o.sections()[shndx];
  uint64_t start = o.symbols()[sym].st_value + static_cast<uint64_t>(r.r_addend);
  if (start > text.hdr.sh_size || f.pc_range > text.hdr.sh_size - start)
    return make_error(ErrorKind::bad_patch, "the FDE's range [{}+{:#x}, +{:#x}) leaves {} ({:#x} bytes)", text.name, start, f.pc_range, text.name,
                      text.hdr.sh_size);
  return ok_result();
}

Result<void> check_eh_frames(const RelObject& o) {
  int found = -1;
  for (size_t i = 1; i < o.sections().size(); ++i) {
    const auto& s = o.sections()[i];
    if (s.name != ".eh_frame" || !s.is_alloc() || s.hdr.sh_size == 0) continue;
    if (found >= 0) return make_error(ErrorKind::bad_patch, "{}: more than one non-empty .eh_frame section", o.label());
    found = static_cast<int>(i);
    if (s.hdr.sh_type == SHT_NOBITS) return make_error(ErrorKind::bad_patch, "{}: .eh_frame has no contents (SHT_NOBITS)", o.label());
    std::map<uint64_t, const Elf64_Rela*> relocs;
    for (const auto& r : o.relocations_for(i)) relocs[r.r_offset] = &r;
    auto fde = [&](const EhFrameFde& f) { return check_fde_in_file(o, i, relocs, f); };
    LG_TRY_VOID(check_eh_frame(o.section_data(i), fde, o.label()));
  }
  return ok_result();
}

}  // namespace

Result<void> check_loadable(const RelObject& obj) {
  LG_TRY_VOID(check_symbols_and_sections(obj));
  LG_TRY_VOID(check_relocations(obj));
  LG_TRY_VOID(check_eh_frames(obj));
  return ok_result();
}

}  // namespace lg::elf
