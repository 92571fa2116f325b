#include "agent/address_space.h"

#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "common/proc_maps.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

namespace lg::agent {

Reservation::Reservation(Reservation&& o) noexcept : addr_(o.addr_), size_(std::exchange(o.size_, 0)) {}

Reservation& Reservation::operator=(Reservation&& o) noexcept {
  if (this != &o) {
    if (size_) ::munmap(ptr(), size_);
    addr_ = o.addr_;
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}

Reservation::~Reservation() {
  if (size_) ::munmap(ptr(), size_);
}

namespace {

// The lowest address we map at (vm.mmap_min_addr is at most 64 KiB on sane systems) and the
// top of the 47-bit user address space (we never ask for 5-level-paging addresses).
constexpr uint64_t kLowest = 1ull << 20;
constexpr uint64_t kHighest = (1ull << 47) - kPageSize;

struct Candidate {
  uint64_t addr;
  uint64_t distance;
  bool above;
};

std::vector<Candidate> candidates(const std::vector<Mapping>& maps, RemoteRange near, uint64_t size) {
  // Window for the start address: [near.hi - limit, near.lo + limit - size].
  uint64_t win_lo = near.hi.value > kNearLimit + kLowest ? near.hi.value - kNearLimit : kLowest;
  uint64_t win_hi_end = std::min(near.lo.value + kNearLimit, kHighest);
  win_lo = page_up(win_lo);
  std::vector<Candidate> out;
  if (win_hi_end < win_lo + size) return out;
  uint64_t prev_end = kLowest;
  bool prev_is_heap = false;
  auto consider = [&](uint64_t gap_lo, uint64_t gap_hi, bool after_heap) {
    gap_lo = std::max(page_up(gap_lo), win_lo);
    gap_hi = std::min(page_down(gap_hi), page_down(win_hi_end));
    // 1. Leave a guard page on both sides so that we never make a mapping grow into ours, and
    //    leave the heap 64 MiB to grow (brk fails, and malloc falls back to mmap, if it can't).
    gap_lo += kPageSize;
    if (after_heap) gap_lo += 64ull << 20;
    if (gap_hi < kPageSize) return;
    gap_hi -= kPageSize;
    if (gap_hi <= gap_lo || gap_hi - gap_lo < size) return;
    if (gap_hi <= near.lo.value) {
      out.push_back({gap_hi - size, near.lo.value - (gap_hi - size), false});
    } else if (gap_lo >= near.hi.value) {
      out.push_back({gap_lo, gap_lo + size - near.hi.value, true});
    }
  };
  for (const auto& m : maps) {
    if (m.range.lo.value > prev_end) consider(prev_end, m.range.lo.value, prev_is_heap);
    prev_end = std::max(prev_end, m.range.hi.value);
    prev_is_heap = m.path == "[heap]";
  }
  if (prev_end < kHighest) consider(prev_end, kHighest, prev_is_heap);
  std::sort(out.begin(), out.end(), [](const Candidate& a, const Candidate& b) {
    if (a.above != b.above) return !a.above;  // below first
    return a.distance < b.distance;
  });
  return out;
}

}  // namespace

Result<Reservation> reserve_near(RemoteRange near, uint64_t size, std::string_view what) {
  if (size == 0 || size % kPageSize != 0) return make_error(ErrorKind::internal, "reserve_near({}): bad size {:#x}", what, size);
  if (near.hi.value < near.lo.value || near.size() + size >= 2 * kNearLimit)
    return make_error(ErrorKind::unsupported, "{}: the target object [{}, {}) is too large to place {:#x} bytes within +-2 GiB of all of it",
                      what, near.lo, near.hi, size);
  // Another thread of the host may map memory between our reading of the maps and our mmap:
  // MAP_FIXED_NOREPLACE then fails with EEXIST and we look again.
  for (int attempt = 0; attempt < 8; ++attempt) {
    LG_TRY(auto maps, read_proc_maps(::getpid()));
    auto cands = candidates(maps, near, size);
    if (cands.empty()) break;
    for (const auto& c : cands) {
      void* p = ::mmap(reinterpret_cast<void*>(c.addr), size, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
      if (p == MAP_FAILED) {
        if (errno == EEXIST) continue;
        return make_errno_error(ErrorKind::io, "{}: mmap {:#x} bytes at {:#x}", what, size, c.addr);
      }
      if (reinterpret_cast<uint64_t>(p) != c.addr) {
        // 2. Kernels before 4.17 ignore MAP_FIXED_NOREPLACE and treat the address as a hint.
        ::munmap(p, size);
        continue;
      }
      return Reservation(c.addr, size);
    }
  }
  return make_error(ErrorKind::unsupported, "{}: no free {:#x} bytes within +-2 GiB of [{}, {})", what, size, near.lo, near.hi);
}

Result<void> safe_read(uint64_t addr, std::span<uint8_t> out) {
  // process_vm_readv on ourselves returns EFAULT for unmapped memory instead of a SIGSEGV.
  iovec local{out.data(), out.size()};
  iovec remote{reinterpret_cast<void*>(addr), out.size()};
  ssize_t n = ::process_vm_readv(::getpid(), &local, 1, &remote, 1, 0);
  if (n < 0) return make_errno_error(ErrorKind::invalid_argument, "reading {} bytes at {:#x}", out.size(), addr);
  if (static_cast<size_t>(n) != out.size())
    return make_error(ErrorKind::invalid_argument, "reading {} bytes at {:#x}: only {} are mapped", out.size(), addr, n);
  return ok_result();
}

}  // namespace lg::agent
