#include "agent/relocate.h"

#include <elf.h>

#include <climits>
#include <cstring>

namespace lg::agent {

// Types that newer <elf.h> versions may lack.
#ifndef R_X86_64_GOTPCRELX
#define R_X86_64_GOTPCRELX 41
#endif
#ifndef R_X86_64_REX_GOTPCRELX
#define R_X86_64_REX_GOTPCRELX 42
#endif

RelocClass classify_relocation(uint32_t type) {
  switch (type) {
    case R_X86_64_NONE:
    case R_X86_64_64:
    case R_X86_64_PC32:
    case R_X86_64_PLT32:
    case R_X86_64_32:
    case R_X86_64_32S:
    case R_X86_64_GOTPCREL:
    case R_X86_64_GOTPCRELX:
    case R_X86_64_REX_GOTPCRELX:
    case R_X86_64_PC64:
    case R_X86_64_GOTPC32:
    case R_X86_64_GOTPC64:
    case R_X86_64_GOTOFF64:
      return RelocClass::supported;
    case R_X86_64_DTPMOD64:
    case R_X86_64_DTPOFF64:
    case R_X86_64_TPOFF64:
    case R_X86_64_TLSGD:
    case R_X86_64_TLSLD:
    case R_X86_64_DTPOFF32:
    case R_X86_64_GOTTPOFF:
    case R_X86_64_TPOFF32:
    case R_X86_64_GOTPC32_TLSDESC:
    case R_X86_64_TLSDESC_CALL:
    case R_X86_64_TLSDESC:
      return RelocClass::tls;
    default:
      return RelocClass::unknown;
  }
}

bool uses_got_slot(uint32_t type) {
  return type == R_X86_64_GOTPCREL || type == R_X86_64_GOTPCRELX || type == R_X86_64_REX_GOTPCRELX;
}

const char* relocation_name(uint32_t type) {
  switch (type) {
#define LG_RELOC_NAME(n) \
  case n: return #n;
    LG_RELOC_NAME(R_X86_64_NONE)
    LG_RELOC_NAME(R_X86_64_64)
    LG_RELOC_NAME(R_X86_64_PC32)
    LG_RELOC_NAME(R_X86_64_GOT32)
    LG_RELOC_NAME(R_X86_64_PLT32)
    LG_RELOC_NAME(R_X86_64_COPY)
    LG_RELOC_NAME(R_X86_64_GLOB_DAT)
    LG_RELOC_NAME(R_X86_64_JUMP_SLOT)
    LG_RELOC_NAME(R_X86_64_RELATIVE)
    LG_RELOC_NAME(R_X86_64_GOTPCREL)
    LG_RELOC_NAME(R_X86_64_32)
    LG_RELOC_NAME(R_X86_64_32S)
    LG_RELOC_NAME(R_X86_64_16)
    LG_RELOC_NAME(R_X86_64_PC16)
    LG_RELOC_NAME(R_X86_64_8)
    LG_RELOC_NAME(R_X86_64_PC8)
    LG_RELOC_NAME(R_X86_64_DTPMOD64)
    LG_RELOC_NAME(R_X86_64_DTPOFF64)
    LG_RELOC_NAME(R_X86_64_TPOFF64)
    LG_RELOC_NAME(R_X86_64_TLSGD)
    LG_RELOC_NAME(R_X86_64_TLSLD)
    LG_RELOC_NAME(R_X86_64_DTPOFF32)
    LG_RELOC_NAME(R_X86_64_GOTTPOFF)
    LG_RELOC_NAME(R_X86_64_TPOFF32)
    LG_RELOC_NAME(R_X86_64_PC64)
    LG_RELOC_NAME(R_X86_64_GOTOFF64)
    LG_RELOC_NAME(R_X86_64_GOTPC32)
    LG_RELOC_NAME(R_X86_64_GOT64)
    LG_RELOC_NAME(R_X86_64_GOTPCREL64)
    LG_RELOC_NAME(R_X86_64_GOTPC64)
    LG_RELOC_NAME(R_X86_64_GOTPLT64)
    LG_RELOC_NAME(R_X86_64_PLTOFF64)
    LG_RELOC_NAME(R_X86_64_SIZE32)
    LG_RELOC_NAME(R_X86_64_SIZE64)
    LG_RELOC_NAME(R_X86_64_GOTPC32_TLSDESC)
    LG_RELOC_NAME(R_X86_64_TLSDESC_CALL)
    LG_RELOC_NAME(R_X86_64_TLSDESC)
    LG_RELOC_NAME(R_X86_64_IRELATIVE)
    LG_RELOC_NAME(R_X86_64_RELATIVE64)
    LG_RELOC_NAME(R_X86_64_GOTPCRELX)
    LG_RELOC_NAME(R_X86_64_REX_GOTPCRELX)
#undef LG_RELOC_NAME
  }
  return "an unknown relocation type";
}

namespace {

Result<void> put_s32(uint8_t* place, int64_t v) {
  if (v < INT32_MIN || v > INT32_MAX)
    return make_error(ErrorKind::unsupported, "value {:#x} does not fit in a signed 32-bit field (target out of +-2 GiB)", v);
  int32_t x = static_cast<int32_t>(v);
  std::memcpy(place, &x, 4);
  return ok_result();
}

Result<void> put_u32(uint8_t* place, uint64_t v) {
  if (v > UINT32_MAX) return make_error(ErrorKind::unsupported, "value {:#x} does not fit in an unsigned 32-bit field", v);
  uint32_t x = static_cast<uint32_t>(v);
  std::memcpy(place, &x, 4);
  return ok_result();
}

void put_64(uint8_t* place, uint64_t v) { std::memcpy(place, &v, 8); }

}  // namespace

Result<void> apply_relocation(const RelocInputs& in) {
  const uint64_t A = static_cast<uint64_t>(in.A);
  switch (in.type) {
    case R_X86_64_NONE:
      return ok_result();
    case R_X86_64_64:
      put_64(in.place, in.S + A);
      return ok_result();
    case R_X86_64_PC64:
      put_64(in.place, in.S + A - in.P);
      return ok_result();
    case R_X86_64_PC32:
    case R_X86_64_PLT32:
      return put_s32(in.place, static_cast<int64_t>(in.S + A - in.P));
    case R_X86_64_32:
      return put_u32(in.place, in.S + A);
    case R_X86_64_32S:
      return put_s32(in.place, static_cast<int64_t>(in.S + A));
    case R_X86_64_GOTPCREL:
    case R_X86_64_GOTPCRELX:
    case R_X86_64_REX_GOTPCRELX:
      // G + GOT + A - P, where G + GOT is the slot's address. The slot itself holds S; we do
      // not relax "mov foo@GOTPCREL(%rip)" into "lea foo(%rip)".
      return put_s32(in.place, static_cast<int64_t>(in.G + A - in.P));
    case R_X86_64_GOTPC32:
      return put_s32(in.place, static_cast<int64_t>(in.GOT + A - in.P));
    case R_X86_64_GOTPC64:
      put_64(in.place, in.GOT + A - in.P);
      return ok_result();
    case R_X86_64_GOTOFF64:
      put_64(in.place, in.S + A - in.GOT);
      return ok_result();
    default:
      return make_error(ErrorKind::unsupported, "{} ({}) is not supported", relocation_name(in.type), in.type);
  }
}

}  // namespace lg::agent
