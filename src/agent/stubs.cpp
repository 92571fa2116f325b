#include "agent/stubs.h"

#include <sys/mman.h>

#include <atomic>
#include <cstring>

#include "x86/encode.h"

namespace lg::agent {

uint64_t Stub::read_slot() const {
  return std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(slot)).load(std::memory_order_acquire);
}

void Stub::write_slot(uint64_t target) const {
  std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(slot)).store(target, std::memory_order_release);
}

std::optional<std::array<uint8_t, kGenerationThunkSize>> encode_generation_thunk(uint64_t at, uint64_t word, uint64_t target,
                                                                                 uint64_t initial) {
  if (!x86::rel32_reaches(at, word, 8) || !x86::rel32_reaches(at + 8, target, 6) || !x86::rel32_reaches(at + 14, initial, 5))
    return std::nullopt;
  std::array<uint8_t, kGenerationThunkSize> b{0x48, 0x83, 0x3d};
  // The displacement is from the end of the instruction, after its imm8.
  int32_t d0 = static_cast<int32_t>(static_cast<int64_t>(word - (at + 8)));
  std::memcpy(&b[3], &d0, 4);
  b[7] = static_cast<uint8_t>(kGenerationNew);
  b[8] = 0x0f;
  b[9] = 0x84;
  int32_t d1 = static_cast<int32_t>(static_cast<int64_t>(target - (at + 14)));
  std::memcpy(&b[10], &d1, 4);
  b[14] = 0xe9;
  int32_t d2 = static_cast<int32_t>(static_cast<int64_t>(initial - (at + 19)));
  std::memcpy(&b[15], &d2, 4);
  return b;
}

Result<StubPool::Arena*> StubPool::new_arena(uint64_t jump_addr) {
  RemoteRange near{RemoteAddr(jump_addr), RemoteAddr(jump_addr + x86::kJmpRel32Size)};
  LG_TRY(auto mem, reserve_near(near, 2 * kPageSize, "allocating stubs"));
  // Every stub of the arena is written now, once: stub i jumps through slot i, one page later.
  uint8_t* code = mem.ptr();
  std::memset(code, 0xcc, kPageSize);
  for (uint64_t i = 0; i < kStubsPerArena; ++i) {
    uint64_t at = mem.addr() + i * kStubSize;
    auto insn = x86::encode_jmp_indirect_rip(at, at + kPageSize);
    std::memcpy(code + i * kStubSize, insn->data(), insn->size());
  }
  if (::mprotect(code, kPageSize, PROT_READ | PROT_EXEC) != 0)
    return make_errno_error(ErrorKind::io, "mprotect of the stub page at {:#x}", mem.addr());
  auto a = std::make_unique<Arena>();
  a->mem = std::move(mem);
  arenas_.push_back(std::move(a));
  return arenas_.back().get();
}

Result<Stub> StubPool::allocate(uint64_t jump_addr) {
  Arena* arena = nullptr;
  for (auto& a : arenas_) {
    if (a->nused == kStubsPerArena) continue;
    // Every stub of an arena is within a page of its start: check the far end too.
    if (x86::rel32_reaches(jump_addr, a->mem.addr(), 5) && x86::rel32_reaches(jump_addr, a->mem.addr() + kPageSize, 5)) {
      arena = a.get();
      break;
    }
  }
  if (!arena) {
    LG_TRY(arena, new_arena(jump_addr));
  }
  for (uint64_t i = 0; i < kStubsPerArena; ++i) {
    if (arena->used[i]) continue;
    arena->used[i] = true;
    ++arena->nused;
    Stub s{arena->mem.addr() + i * kStubSize, arena->mem.addr() + kPageSize + i * kStubSize};
    s.write_slot(0);
    return s;
  }
  return make_error(ErrorKind::internal, "stub arena has no free stub");
}

void StubPool::release(const Stub& stub) {
  for (auto it = arenas_.begin(); it != arenas_.end(); ++it) {
    auto& a = **it;
    if (stub.code < a.mem.addr() || stub.code >= a.mem.addr() + kPageSize) continue;
    uint64_t i = (stub.code - a.mem.addr()) / kStubSize;
    if (!a.used[i]) return;
    a.used[i] = false;
    stub.write_slot(0);
    if (--a.nused == 0) arenas_.erase(it);
    return;
  }
}

}  // namespace lg::agent
