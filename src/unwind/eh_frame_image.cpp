#include "unwind/eh_frame_image.h"

#include <elf.h>

#include <cstring>

namespace lg {

namespace {

size_t align_up(size_t v, size_t a) { return (v + a - 1) & ~(a - 1); }

template <class T>
void put(std::vector<uint8_t>& out, size_t at, const T& v) {
  std::memcpy(out.data() + at, &v, sizeof v);
}

}  // namespace

std::vector<uint8_t> build_eh_frame_image(std::span<const uint8_t> eh_frame, uint64_t eh_frame_addr) {
  static const char kShstr[] = "\0.eh_frame\0.shstrtab";  // offsets: .eh_frame 1, .shstrtab 11
  const size_t eh_off = sizeof(Elf64_Ehdr);
  const size_t eh_size = eh_frame.size() + 4;  // a zero-length entry terminates .eh_frame
  const size_t str_off = eh_off + eh_size;
  const size_t sh_off = align_up(str_off + sizeof kShstr, 8);
  std::vector<uint8_t> out(sh_off + 3 * sizeof(Elf64_Shdr), 0);

  Elf64_Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS64;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_ident[EI_VERSION] = EV_CURRENT;
  eh.e_type = ET_DYN;
  eh.e_machine = EM_X86_64;  // selects libdw's x86-64 backend: the ABI's initial CFI rules
  eh.e_version = EV_CURRENT;
  eh.e_shoff = sh_off;
  eh.e_ehsize = sizeof(Elf64_Ehdr);
  eh.e_shentsize = sizeof(Elf64_Shdr);
  eh.e_shnum = 3;
  eh.e_shstrndx = 2;
  put(out, 0, eh);

  if (!eh_frame.empty()) std::memcpy(out.data() + eh_off, eh_frame.data(), eh_frame.size());
  std::memcpy(out.data() + str_off, kShstr, sizeof kShstr);

  Elf64_Shdr text{};
  text.sh_name = 1;
  text.sh_type = SHT_PROGBITS;
  text.sh_flags = SHF_ALLOC;
  text.sh_addr = eh_frame_addr;
  text.sh_offset = eh_off;
  text.sh_size = eh_size;
  text.sh_addralign = 1;
  put(out, sh_off + sizeof(Elf64_Shdr), text);

  Elf64_Shdr str{};
  str.sh_name = 11;
  str.sh_type = SHT_STRTAB;
  str.sh_offset = str_off;
  str.sh_size = sizeof kShstr;
  str.sh_addralign = 1;
  put(out, sh_off + 2 * sizeof(Elf64_Shdr), str);
  return out;
}

}  // namespace lg
