#include "agent/relocate.h"

#include <elf.h>

#include <climits>
#include <cstring>

namespace lg::agent {

bool uses_got_slot(uint32_t type) {
  return type == R_X86_64_GOTPCREL || type == R_X86_64_GOTPCRELX || type == R_X86_64_REX_GOTPCRELX;
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
