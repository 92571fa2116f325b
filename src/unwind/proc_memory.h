// ProcMemory: reads a stopped target's memory through /proc/PID/mem (pread), the one access
// path the unwinder needs. The caller keeps the thread ptrace-stopped while it reads.
#pragma once

#include <sys/types.h>

#include <memory>

#include "common/fd.h"
#include "unwind/dwarf_expr.h"

namespace lg {

class ProcMemory final : public MemoryReader {
 public:
  // Errors: the process does not exist or we may not read its memory.
  static Result<ProcMemory> open(pid_t pid);

  Result<uint64_t> read_u64(RemoteAddr addr) override;
  Result<void> read(RemoteAddr addr, std::span<uint8_t> out) override;

 private:
  ProcMemory(pid_t pid, UniqueFd fd) : pid_(pid), fd_(std::move(fd)) {}
  pid_t pid_;
  UniqueFd fd_;
};

}  // namespace lg

namespace lg {

// PageCache: memoizes whole pages of another reader for the duration of one stack walk (a walk
// reads a few words from the same one or two stack pages; one pread per page instead of per
// word). Only valid while the thread being walked stays stopped: clear() between walks.
class PageCache final : public MemoryReader {
 public:
  explicit PageCache(MemoryReader& backing) : backing_(backing) {}
  void clear() { used_ = 0; }

  Result<uint64_t> read_u64(RemoteAddr addr) override;
  Result<void> read(RemoteAddr addr, std::span<uint8_t> out) override;

 private:
  static constexpr uint64_t kPage = 4096;
  static constexpr size_t kSlots = 8;
  struct Slot {
    uint64_t page = 0;
    uint8_t bytes[kPage];
  };
  const Slot* page(uint64_t page_addr);

  MemoryReader& backing_;
  std::unique_ptr<Slot[]> slots_ = std::make_unique<Slot[]>(kSlots);
  size_t used_ = 0, next_ = 0;
};

}  // namespace lg
