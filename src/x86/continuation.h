// The "original continuation" of a redirected function: its displaced entry instructions,
// relocated so that they run at another address, followed by a jump back to the first
// instruction the entry jump did not cover. Threads still in the old universe (per-thread
// model) call the original function through it after its entry was overwritten.
//
// The controller builds a position-independent *template* (relocate_prologue, Zydis); the agent
// (libc only) places it and fills in the rel32 fields (place_continuation, header-only).
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <vector>

namespace lg::x86 {

// One rel32 field of the template: the 4 bytes at [offset] must hold target - (base + end),
// where base is where the continuation is placed and [end] the end of that instruction.
struct Rel32Fixup {
  uint32_t offset = 0;
  uint32_t end = 0;
  uint64_t target = 0;  // absolute
};

struct ContinuationTemplate {
  std::vector<uint8_t> bytes;
  std::vector<Rel32Fixup> fixups;
  uint64_t resume = 0;     // where the jump back goes (jump_addr + displaced)
  uint32_t displaced = 0;  // bytes of the original the entry jump displaced
};

// The bytes of [t] placed at [base]; nullopt when a fixup does not reach from there.
inline std::optional<std::vector<uint8_t>> place_continuation(const ContinuationTemplate& t, uint64_t base) {
  std::vector<uint8_t> out = t.bytes;
  for (const auto& f : t.fixups) {
    if (f.offset + 4 > out.size() || f.end > out.size() || f.end < f.offset + 4) return std::nullopt;
    int64_t d = static_cast<int64_t>(f.target - (base + f.end));
    if (d < INT32_MIN || d > INT32_MAX) return std::nullopt;
    int32_t d32 = static_cast<int32_t>(d);
    std::memcpy(out.data() + f.offset, &d32, 4);
  }
  return out;
}

}  // namespace lg::x86
