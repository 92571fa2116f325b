// The agent's view of its own address space: finding free room within +-2 GiB of some code,
// reserving it without clobbering anything (MAP_FIXED_NOREPLACE), and reading memory that might
// not be mapped without faulting.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "common/remote.h"
#include "common/result.h"

namespace lg::agent {

inline constexpr uint64_t kPageSize = 4096;
// Anything placed "near" X lies within X +- kNearLimit, which leaves 1 MiB of slack under the
// rel32 reach (2 GiB) for relocation addends and instruction lengths.
inline constexpr uint64_t kNearLimit = (1ull << 31) - (1ull << 20);

inline uint64_t page_up(uint64_t v) { return (v + kPageSize - 1) & ~(kPageSize - 1); }
inline uint64_t page_down(uint64_t v) { return v & ~(kPageSize - 1); }

// An anonymous private mapping owned by this object: unmapped on destruction.
class Reservation {
 public:
  Reservation() = default;
  Reservation(uint64_t addr, uint64_t size) : addr_(addr), size_(size) {}
  Reservation(Reservation&& o) noexcept;
  Reservation& operator=(Reservation&& o) noexcept;
  Reservation(const Reservation&) = delete;
  Reservation& operator=(const Reservation&) = delete;
  ~Reservation();

  uint64_t addr() const { return addr_; }
  uint64_t size() const { return size_; }
  uint64_t end() const { return addr_ + size_; }
  uint8_t* ptr(uint64_t off = 0) const { return reinterpret_cast<uint8_t*>(addr_ + off); }
  bool valid() const { return size_ != 0; }
  // Releases ownership without unmapping (for mappings that must stay forever).
  void release() { size_ = 0; }

 private:
  uint64_t addr_ = 0, size_ = 0;
};

// Maps [size] bytes (a page multiple) read-write, such that the whole mapping lies within
// kNearLimit of every byte of [near]: it is within reach of rel32 from anywhere in [near] and
// back. Prefers room just below [near] (room above an executable is where its heap grows).
// Fails with kind `unsupported` when no such room is free.
Result<Reservation> reserve_near(RemoteRange near, uint64_t size, std::string_view what);

// Copies [out.size()] bytes from address [addr] of this process; fails (instead of faulting)
// when the memory is not readable.
Result<void> safe_read(uint64_t addr, std::span<uint8_t> out);

}  // namespace lg::agent
