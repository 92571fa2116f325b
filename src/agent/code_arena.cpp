#include "agent/code_arena.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "agent/text_poke.h"

namespace lg::agent {

namespace {
bool page_near(uint64_t page, RemoteRange near) {
  auto within = [](uint64_t a, uint64_t b) { return (a > b ? a - b : b - a) < kNearLimit; };
  return within(page, near.lo.value) && within(page + kPageSize, near.hi.value) && within(page, near.hi.value) &&
         within(page + kPageSize, near.lo.value);
}
}  // namespace

bool CodeArena::take(Page& p, uint64_t size, uint64_t* off) {
  for (auto it = p.free.begin(); it != p.free.end(); ++it) {
    if (it->second < size) continue;
    *off = it->first;
    uint64_t rest = it->second - size;
    p.free.erase(it);
    if (rest) p.free.emplace(*off + size, rest);
    return true;
  }
  return false;
}

void CodeArena::give(Page& p, uint64_t off, uint64_t size) {
  auto next = p.free.lower_bound(off);
  if (next != p.free.end() && off + size == next->first) {  // merge with the one after
    size += next->second;
    next = p.free.erase(next);
  }
  if (next != p.free.begin()) {  // and with the one before
    auto prev = std::prev(next);
    if (prev->first + prev->second == off) {
      prev->second += size;
      return;
    }
  }
  p.free.emplace(off, size);
}

CodeArena::Page* CodeArena::page_of(uint64_t addr) {
  for (auto& p : pages_)
    if (addr >= p.addr && addr < p.addr + kPageSize) return &p;
  return nullptr;
}

Result<uint64_t> CodeArena::reserve(RemoteRange near, uint64_t size) {
  size = (std::max<uint64_t>(size, 1) + kAlign - 1) & ~(kAlign - 1);
  if (size > kPageSize) return make_error(ErrorKind::internal, "code piece of {} bytes is larger than a page", size);
  uint64_t at = 0;
  for (auto& p : pages_) {
    uint64_t off = 0;
    if (page_near(p.addr, near) && take(p, size, &off)) {
      at = p.addr + off;
      break;
    }
  }
  if (!at) {
    LG_TRY(auto mem, reserve_near(near, kPageSize, "allocating per-thread dispatch code"));
    std::memset(mem.ptr(), 0xcc, kPageSize);
    if (::mprotect(mem.ptr(), kPageSize, PROT_READ | PROT_EXEC) != 0)
      return make_errno_error(ErrorKind::io, "mprotect of a code page at {:#x}", mem.addr());
    Page p{mem.addr(), {}};
    if (size < kPageSize) p.free.emplace(size, kPageSize - size);
    pages_.push_back(std::move(p));
    at = mem.addr();
    mem.release();  // unmapped only by rollback (see the header)
  }
  live_[at] = {size, next_seq_++};
  return at;
}

Result<uint64_t> CodeArena::place(RemoteRange near, std::span<const uint8_t> code) {
  LG_TRY(uint64_t at, reserve(near, code.size()));
  LG_TRY_VOID(write_code(at, code));
  return at;
}

Result<void> CodeArena::release(uint64_t addr) {
  auto it = live_.find(addr);
  if (it == live_.end()) return ok_result();
  Page* p = page_of(addr);
  if (!p) return make_error(ErrorKind::internal, "code piece {:#x} is in none of the arena's pages", addr);
  // int3 first, and every core serialized, before the room can be handed out again: a wrong
  // jump into it traps, and no core keeps the old bytes decoded.
  std::vector<uint8_t> int3(it->second.size, 0xcc);
  LG_TRY_VOID(write_code(addr, int3));
  LG_TRY_VOID(sync_cores());
  give(*p, addr - p->addr, it->second.size);
  live_.erase(it);
  return ok_result();
}

uint64_t CodeArena::size_of(uint64_t addr) const {
  auto it = live_.find(addr);
  return it == live_.end() ? 0 : it->second.size;
}

void CodeArena::rollback(const Mark& m) {
  // Nothing ever ran these pieces: int3 again (best effort, they are unreachable anyway).
  for (auto it = live_.begin(); it != live_.end();) {
    if (it->second.seq < m.seq) {
      ++it;
      continue;
    }
    std::vector<uint8_t> int3(it->second.size, 0xcc);
    (void)write_code(it->first, int3);
    if (Page* p = page_of(it->first)) give(*p, it->first - p->addr, it->second.size);
    it = live_.erase(it);
  }
  while (pages_.size() > m.pages) {
    const Page& last = pages_.back();
    if (last.free.size() != 1 || last.free.begin()->first != 0 || last.free.begin()->second != kPageSize) break;
    ::munmap(reinterpret_cast<void*>(last.addr), kPageSize);
    pages_.pop_back();
  }
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

CodeArena::Usage CodeArena::usage() const {
  Usage u;
  u.mapped = pages_.size() * kPageSize;
  for (const auto& [addr, piece] : live_) u.live += piece.size;
  u.free = u.mapped - u.live;
  u.pieces = live_.size();
  return u;
}

}  // namespace lg::agent
