#include "unwind/proc_memory.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cstring>

namespace lg {

Result<ProcMemory> ProcMemory::open(pid_t pid) {
  std::string path = fmt::format("/proc/{}/mem", pid);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return make_errno_error(ErrorKind::io, "open {}", path);
  return ProcMemory(pid, std::move(fd));
}

Result<uint64_t> ProcMemory::read_u64(RemoteAddr addr) {
  uint8_t buf[8];
  LG_TRY_VOID(read(addr, buf));
  uint64_t v;
  std::memcpy(&v, buf, sizeof v);
  return v;
}

Result<void> ProcMemory::read(RemoteAddr addr, std::span<uint8_t> out) {
  size_t done = 0;
  while (done < out.size()) {
    // pread's offset is signed: addresses above 2^63 are not user addresses anyway.
    if (addr.value + done > static_cast<uint64_t>(INT64_MAX))
      return make_error(ErrorKind::io, "address {:#x} is not a user address", addr.value + done);
    ssize_t n = ::pread(fd_.get(), out.data() + done, out.size() - done, static_cast<off_t>(addr.value + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int e = n < 0 ? errno : 0;
      // A read of a dead process's memory returns 0 (its mm is gone) or fails with ESRCH.
      if ((n == 0 || e == ESRCH) && ::kill(pid_, 0) != 0 && errno == ESRCH)
        return make_error(ErrorKind::thread_died, "process {} exited while its memory was read", pid_);
      if (n == 0)
        return make_error(ErrorKind::io, "reading {} bytes at {:#x} of process {}: end of memory", out.size(),
                          addr.value, pid_);
      errno = e;
      return make_errno_error(ErrorKind::io, "reading {} bytes at {:#x} of process {}", out.size(), addr.value, pid_);
    }
    done += static_cast<size_t>(n);
  }
  return {};
}

}  // namespace lg

namespace lg {

const PageCache::Slot* PageCache::page(uint64_t page_addr) {
  for (size_t i = 0; i < used_; ++i)
    if (slots_[i].page == page_addr) return &slots_[i];
  size_t i = used_ < kSlots ? used_++ : (next_++ % kSlots);
  Slot& s = slots_[i];
  s.page = 1;  // matches no page address until filled
  if (!backing_.read(RemoteAddr(page_addr), std::span<uint8_t>(s.bytes, kPage)).ok()) {
    // Unreadable (a guard page, or a page the kernel cannot read): the caller falls back to an
    // exact read, which reports the error.
    return nullptr;
  }
  s.page = page_addr;
  return &s;
}

Result<void> PageCache::read(RemoteAddr addr, std::span<uint8_t> out) {
  uint64_t first = addr.value & ~(kPage - 1);
  if (out.size() <= kPage && ((addr.value + out.size() - 1) & ~(kPage - 1)) == first && !out.empty()) {
    if (const Slot* s = page(first)) {
      std::memcpy(out.data(), s->bytes + (addr.value - first), out.size());
      return {};
    }
  }
  return backing_.read(addr, out);
}

Result<uint64_t> PageCache::read_u64(RemoteAddr addr) {
  uint8_t buf[8];
  LG_TRY_VOID(read(addr, buf));
  uint64_t v;
  std::memcpy(&v, buf, sizeof v);
  return v;
}

}  // namespace lg
