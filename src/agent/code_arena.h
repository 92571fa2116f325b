// Small pieces of code the agent creates while the process runs (original continuations,
// dispatch thunks, switch thunks), placed within rel32 reach of the functions they serve.
// Pages are mapped r-x at once and written through /proc/self/mem before anything can jump
// to them. A piece is given back (release) only once no thread can be inside it: the registry
// retires pieces that left the hot path and releases them after a grace period the controller
// observed (docs/consistency.md, "Memory"). Released bytes are int3 again before they can be
// handed out, so a stray jump into them traps instead of running stale code.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <vector>

#include "agent/address_space.h"
#include "common/result.h"

namespace lg::agent {

class CodeArena {
 public:
  static constexpr uint64_t kAlign = 16;

  // Copies [code] to a new place within kNearLimit of [near]; returns its address.
  Result<uint64_t> place(RemoteRange near, std::span<const uint8_t> code);
  // Reserves [size] bytes near [near] without writing them (int3-filled): reused free space of
  // a page near enough first, else a new page.
  Result<uint64_t> reserve(RemoteRange near, uint64_t size);
  // Gives the piece at [addr] back: its bytes become int3 (through /proc/self/mem, then every
  // core is serialized), then its room is free for reserve(). The caller guarantees that no
  // thread is inside it and nothing jumps to it. Unknown [addr]: no-op. Errors: the write.
  Result<void> release(uint64_t addr);
  // The size of the live piece at [addr], 0 when none.
  uint64_t size_of(uint64_t addr) const;
  // Whether [addr] is in one of our pages, and the pages themselves (for diagnostics).
  bool contains(uint64_t addr) const;
  std::vector<RemoteRange> ranges() const;

  // Giving back everything reserved since a mark: only for pieces nothing ever jumped to (a
  // stop-the-world transition undone before any of its writes). Pages mapped since the mark
  // that end up empty are unmapped again.
  struct Mark {
    uint64_t seq = 0;
    size_t pages = 0;
  };
  Mark mark() const { return {next_seq_, pages_.size()}; }
  void rollback(const Mark& m);

  struct Usage {
    uint64_t mapped = 0;  // bytes of pages mapped (kPageSize each)
    uint64_t live = 0;    // bytes of pieces handed out and not released (retired ones included)
    uint64_t free = 0;    // mapped - live
    uint64_t pieces = 0;
  };
  Usage usage() const;

 private:
  struct Piece {
    uint64_t size = 0, seq = 0;
  };
  struct Page {
    uint64_t addr = 0;
    std::map<uint64_t, uint64_t> free;  // offset -> length, coalesced
  };
  static bool take(Page& p, uint64_t size, uint64_t* off);
  static void give(Page& p, uint64_t off, uint64_t size);
  Page* page_of(uint64_t addr);

  std::vector<Page> pages_;
  std::map<uint64_t, Piece> live_;  // by address
  uint64_t next_seq_ = 1;
};

}  // namespace lg::agent
