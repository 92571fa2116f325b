// The .eh_frame structure validator on raw tables, with an FDE check that accepts every range
// (as if it were patch code) so the walk goes as far as the structure allows.
#include <cstddef>
#include <cstdint>

#include "elf/eh_frame_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> table(data, size);
  size_t fdes = 0;
  auto r = lg::elf::check_eh_frame(table, [&](const lg::elf::EhFrameFde& f) -> lg::Result<void> {
    if (f.pc_begin_field + 4 > size || f.offset >= f.pc_begin_field) __builtin_trap();
    (void)lg::elf::eh_frame_pc_begin(f, 0x7f0000000000);
    ++fdes;
    return lg::ok_result();
  }, "fuzz");
  if (r && (r->fdes != fdes || r->end > size)) __builtin_trap();
  return 0;
}
