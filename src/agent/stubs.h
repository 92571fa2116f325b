// Stubs: one per redirected function, `jmp *slot(%rip)` in an r-x page within +-2 GiB of the
// function's jump site, with its 8-byte slot in the rw- page right after it. Retargeting a
// function is a store to its slot; the stub's code never changes after its page is mapped.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "agent/address_space.h"
#include "common/result.h"

namespace lg::agent {

struct Stub {
  uint64_t code = 0;  // address of the jmp *slot(%rip)
  uint64_t slot = 0;  // address of the 8-byte slot
  uint64_t read_slot() const;
  void write_slot(uint64_t target) const;  // only for a stub that nothing jumps to yet
};

// The switch thunk of a stop-the-world transition (docs/consistency.md, "The switch"): while
// the transition's generation word (an 8-byte slot of this pool) is 0 it sends every thread to
// [initial], once it is 1 to [target]. One store to the word switches every function at once.
//     cmpq $1, word(%rip)     48 83 3d disp32 01   (8 bytes)
//     je   target             0f 84 rel32          (6 bytes)
//     jmp  initial            e9 rel32             (5 bytes)
// Register contract as the per-thread dispatch thunk: only RFLAGS changes. nullopt when the
// word or a target is out of rel32 reach of [at].
inline constexpr size_t kGenerationThunkSize = 19;
inline constexpr uint64_t kGenerationOld = 0, kGenerationNew = 1;
std::optional<std::array<uint8_t, kGenerationThunkSize>> encode_generation_thunk(uint64_t at, uint64_t word, uint64_t target,
                                                                                 uint64_t initial);

class StubPool {
 public:
  static constexpr uint64_t kStubSize = 8;  // 6 bytes of jmp + 2 of int3
  static constexpr uint64_t kStubsPerArena = kPageSize / kStubSize;

  // A stub reachable by a 5-byte `jmp rel32` at [jump_addr]; its slot holds 0.
  Result<Stub> allocate(uint64_t jump_addr);
  // Returns a stub to the pool; an arena whose stubs are all free is unmapped. The caller
  // guarantees that no thread executes it and no code jumps to it anymore.
  void release(const Stub& stub);
  size_t arenas() const { return arenas_.size(); }

 private:
  struct Arena {
    Reservation mem;  // page 0: stubs (r-x), page 1: slots (rw-)
    std::vector<bool> used = std::vector<bool>(kStubsPerArena, false);
    size_t nused = 0;
  };
  Result<Arena*> new_arena(uint64_t jump_addr);
  std::vector<std::unique_ptr<Arena>> arenas_;
};

}  // namespace lg::agent
