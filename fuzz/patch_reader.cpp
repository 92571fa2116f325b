// The controller's validation of a patch file: the one reader (elf::RelObject), the loader's
// checks (elf::check_loadable, .eh_frame included) and the metadata (read_patch_object).
#include <cstddef>
#include <cstdint>

#include "elf/patch_object.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto r = lg::read_patch_object(std::span<const uint8_t>(data, size), "fuzz.o");
  if (r) {
    // Accepted: what the controller uses afterwards must be consistent.
    for (const auto& o : r->objects)
      for (const auto& f : o.funcs)
        if (f.new_code.size() != f.new_size) __builtin_trap();
  }
  return 0;
}
