#include "builder/verify.h"

#include <elf.h>

#include <vector>

namespace lg::builder {

Result<void> verify_function(const Object& orig, const Symbol& f, const TargetBinary& target,
                             const TargetSymbol& in_target) {
  if (in_target.size != f.size)
    return make_error(ErrorKind::mismatch,
                      "{} is {} bytes in {} but {} bytes in the rebuilt original: {}", f.name, in_target.size,
                      target.path, f.size, kTargetBuiltDifferently);
  const Section* sec = orig.section_of(f);
  if (!sec || sec->data.size() < f.value + f.size) return ok_result();
  LG_TRY(auto code, target.read(in_target.value, in_target.size));
  std::vector<bool> skip(f.size, false);
  for (const Relocation& r : sec->relocations) {
    if (r.offset < f.value || r.offset >= f.value + f.size) continue;
    uint64_t at = r.offset - f.value;
    uint64_t width = (r.type == R_X86_64_64 || r.type == R_X86_64_PC64) ? 8 : 4;
    uint64_t from = at;
    // The linker may rewrite the instruction around a GOT load (mov -> lea, call *got -> addr32
    // call) or a call through the PLT: mask the opcode and prefix bytes too.
    if (r.type == R_X86_64_GOTPCRELX || r.type == R_X86_64_REX_GOTPCRELX || r.type == R_X86_64_GOTPCREL)
      from = at >= 3 ? at - 3 : 0;
    for (uint64_t k = from; k < at + width && k < f.size; ++k) skip[k] = true;
  }
  const uint8_t* mine = sec->data.data() + f.value;
  for (uint64_t k = 0; k < f.size; ++k) {
    if (skip[k] || mine[k] == code[k]) continue;
    return make_error(ErrorKind::mismatch,
                      "{} in {} differs from the rebuilt original at offset {:#x} (target {:#04x}, rebuilt {:#04x}): {}",
                      f.name, target.path, k, code[k], mine[k], kTargetBuiltDifferently);
  }
  return ok_result();
}

}  // namespace lg::builder
