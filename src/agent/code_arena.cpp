#include "agent/code_arena.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>

#include "agent/text_poke.h"

namespace lg::agent {

namespace {
bool page_near(uint64_t page, RemoteRange near) {
  auto within = [](uint64_t a, uint64_t b) { return (a > b ? a - b : b - a) < kNearLimit; };
  return within(page, near.lo.value) && within(page + kPageSize, near.hi.value) && within(page, near.hi.value) &&
         within(page + kPageSize, near.lo.value);
}
}  // namespace

Result<uint64_t> CodeArena::reserve(RemoteRange near, uint64_t size) {
  size = (size + 15) & ~uint64_t{15};
  if (size > kPageSize) return make_error(ErrorKind::internal, "code piece of {} bytes is larger than a page", size);
  for (auto& p : pages_) {
    if (p.used + size <= kPageSize && page_near(p.addr, near)) {
      uint64_t at = p.addr + p.used;
      p.used += size;
      return at;
    }
  }
  LG_TRY(auto mem, reserve_near(near, kPageSize, "allocating per-thread dispatch code"));
  std::memset(mem.ptr(), 0xcc, kPageSize);
  if (::mprotect(mem.ptr(), kPageSize, PROT_READ | PROT_EXEC) != 0)
    return make_errno_error(ErrorKind::io, "mprotect of a code page at {:#x}", mem.addr());
  pages_.push_back({mem.addr(), size});
  uint64_t at = mem.addr();
  mem.release();  // never unmapped (see the header)
  return at;
}

Result<uint64_t> CodeArena::place(RemoteRange near, std::span<const uint8_t> code) {
  LG_TRY(uint64_t at, reserve(near, code.size()));
  LG_TRY_VOID(write_code(at, code));
  return at;
}

CodeArena::Mark CodeArena::mark() const {
  Mark m;
  for (const auto& p : pages_) m.used.push_back(p.used);
  return m;
}

void CodeArena::rollback(const Mark& m) {
  while (pages_.size() > m.used.size()) {
    ::munmap(reinterpret_cast<void*>(pages_.back().addr), kPageSize);
    pages_.pop_back();
  }
  // Pieces reserved since in older pages are forgotten (their bytes are never reached).
  for (size_t i = 0; i < pages_.size(); ++i) pages_[i].used = std::min(pages_[i].used, m.used[i]);
}

bool CodeArena::contains(uint64_t addr) const {
  for (const auto& p : pages_)
    if (addr >= p.addr && addr < p.addr + kPageSize) return true;
  return false;
}

std::vector<RemoteRange> CodeArena::ranges() const {
  std::vector<RemoteRange> out;
  for (const auto& p : pages_) out.push_back({RemoteAddr(p.addr), RemoteAddr(p.addr + kPageSize)});
  return out;
}

}  // namespace lg::agent
