// The agent's loader up to the point where it would map memory: parse, check_loadable, layout,
// relocation scan (lg::agent::plan_load).
#include <cstddef>
#include <cstdint>

#include "agent/loader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)lg::agent::plan_load(std::span<const uint8_t>(data, size), "fuzz.o");
  return 0;
}
