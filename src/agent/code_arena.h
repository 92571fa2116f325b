// Small pieces of code the per-thread model creates while the process runs (original
// continuations, dispatch thunks), placed within rel32 reach of the functions they serve.
// Pages are mapped r-x at once and written through /proc/self/mem before anything can jump
// to them. They are never freed: a thread may have been sent into one a moment before it was
// retired and still be there (docs/consistency.md, "Memory").
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "agent/address_space.h"
#include "common/result.h"

namespace lg::agent {

class CodeArena {
 public:
  // Copies [code] to a new place within kNearLimit of [near]; returns its address.
  Result<uint64_t> place(RemoteRange near, std::span<const uint8_t> code);
  // Reserves [size] bytes near [near] without writing them (int3-filled).
  Result<uint64_t> reserve(RemoteRange near, uint64_t size);
  // Whether [addr] is in one of our pages, and the pages themselves (for diagnostics).
  bool contains(uint64_t addr) const;
  // What is reserved now, and giving back everything reserved since: only for pieces nothing
  // ever jumped to (a stop-the-world transition undone before any of its writes).
  struct Mark {
    std::vector<uint64_t> used;  // per page
  };
  Mark mark() const;
  void rollback(const Mark& m);
  std::vector<RemoteRange> ranges() const;

 private:
  struct Page {
    uint64_t addr = 0, used = 0;
  };
  std::vector<Page> pages_;
};

}  // namespace lg::agent
