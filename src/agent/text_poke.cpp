#include "agent/text_poke.h"

#include <fcntl.h>
#include <linux/membarrier.h>
#include <signal.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <mutex>

#include "x86/encode.h"

namespace lg::agent {

namespace {

// 1. The trap site table is read by the SIGTRAP handler (async-signal context, any thread):
//    lock-free, fixed size, entries only ever added (or their redirect updated).
constexpr size_t kMaxSites = 4096;
struct Site {
  std::atomic<uint64_t> addr{0};
  std::atomic<uint64_t> redirect{0};
};
Site g_sites[kMaxSites];
std::atomic<size_t> g_nsites{0};
std::atomic<uint64_t> g_redirects{0};

struct sigaction g_previous {};
std::mutex g_install_mu;
bool g_membarrier_registered = false;
int g_mem_fd = -1;
pid_t g_mem_pid = 0;  // whose /proc/self/mem g_mem_fd is (a forked child inherits the parent's)

Site* find_site(uint64_t addr) {
  size_t n = g_nsites.load(std::memory_order_acquire);
  for (size_t i = 0; i < n; ++i)
    if (g_sites[i].addr.load(std::memory_order_relaxed) == addr) return &g_sites[i];
  return nullptr;
}

void chain(int sig, siginfo_t* info, void* uc) {
  const struct sigaction& p = g_previous;
  if (p.sa_flags & SA_SIGINFO) {
    if (p.sa_sigaction) p.sa_sigaction(sig, info, uc);
    return;
  }
  if (p.sa_handler == SIG_IGN && info->si_code <= 0) return;  // a sent SIGTRAP the host ignores
  if (p.sa_handler == SIG_DFL || p.sa_handler == SIG_IGN) {
    // What the kernel would have done without us: the default action (a core dump). The
    // signal is blocked while we run; it is delivered when the handler returns.
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    ::sigaction(SIGTRAP, &dfl, nullptr);
    ::raise(SIGTRAP);
    return;
  }
  p.sa_handler(sig);
}

void on_sigtrap(int sig, siginfo_t* info, void* ucv) {
  auto* uc = static_cast<ucontext_t*>(ucv);
  if (info->si_code == SI_KERNEL) {  // int3 (a breakpoint raises SIGTRAP with SI_KERNEL on x86-64)
    uint64_t site_addr = static_cast<uint64_t>(uc->uc_mcontext.gregs[REG_RIP]) - 1;
    if (Site* s = find_site(site_addr)) {
      uint8_t now = *reinterpret_cast<volatile uint8_t*>(site_addr);
      uc->uc_mcontext.gregs[REG_RIP] =
          static_cast<greg_t>(now == x86::kInt3 ? s->redirect.load(std::memory_order_acquire) : site_addr);
      g_redirects.fetch_add(1, std::memory_order_relaxed);
      return;
    }
  }
  chain(sig, info, ucv);
}

Result<void> install_handler() {
  std::lock_guard lock(g_install_mu);
  struct sigaction cur {};
  if (::sigaction(SIGTRAP, nullptr, &cur) != 0) return make_errno_error(ErrorKind::io, "sigaction(SIGTRAP)");
  if ((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == on_sigtrap) return ok_result();
  struct sigaction sa {};
  sa.sa_sigaction = on_sigtrap;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  // 2. Whoever was installed (the host's handler, or the default) gets every SIGTRAP that is
  //    not one of our sites.
  if (::sigaction(SIGTRAP, &sa, &g_previous) != 0) return make_errno_error(ErrorKind::io, "installing the SIGTRAP handler");
  return ok_result();
}

Result<void> add_site(uint64_t addr, uint64_t redirect) {
  if (Site* s = find_site(addr)) {
    s->redirect.store(redirect, std::memory_order_release);
    return ok_result();
  }
  size_t i = g_nsites.load(std::memory_order_relaxed);
  if (i == kMaxSites) return make_error(ErrorKind::unsupported, "more than {} code sites rewritten in this process", kMaxSites);
  g_sites[i].redirect.store(redirect, std::memory_order_relaxed);
  g_sites[i].addr.store(addr, std::memory_order_relaxed);
  g_nsites.store(i + 1, std::memory_order_release);
  return ok_result();
}

}  // namespace

Result<void> write_code(uint64_t addr, std::span<const uint8_t> bytes) {
  // The descriptor names the memory of the process that opened it: after fork() the child's
  // copy would write into its PARENT's code and slots. Reopened in a process that did not open it.
  if (g_mem_fd < 0 || g_mem_pid != ::getpid()) {
    if (g_mem_fd >= 0) ::close(g_mem_fd);
    g_mem_fd = ::open("/proc/self/mem", O_RDWR | O_CLOEXEC);
    if (g_mem_fd < 0) return make_errno_error(ErrorKind::io, "open /proc/self/mem");
    g_mem_pid = ::getpid();
  }
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = ::pwrite(g_mem_fd, bytes.data() + off, bytes.size() - off, static_cast<off_t>(addr + off));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return make_errno_error(ErrorKind::io, "writing {} bytes of code at {:#x} through /proc/self/mem", bytes.size(), addr);
    off += static_cast<size_t>(n);
  }
  return ok_result();
}

Result<void> sync_cores() {
  if (!g_membarrier_registered) {
    long q = ::syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    if (q < 0 || !(q & MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE))
      return make_error(ErrorKind::unsupported,
                        "this kernel has no membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE); use --model stop-the-world");
    if (::syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE, 0, 0) != 0)
      return make_errno_error(ErrorKind::unsupported, "membarrier(REGISTER_PRIVATE_EXPEDITED_SYNC_CORE)");
    g_membarrier_registered = true;
  }
  if (::syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE, 0, 0) != 0)
    return make_errno_error(ErrorKind::io, "membarrier(PRIVATE_EXPEDITED_SYNC_CORE)");
  return ok_result();
}

Result<void> poke_begin(uint64_t addr, uint8_t expected_first, uint64_t redirect) {
  LG_TRY_VOID(install_handler());
  LG_TRY_VOID(sync_cores());  // fails before anything is written when the kernel cannot do it
  uint8_t now = *reinterpret_cast<volatile uint8_t*>(addr);
  if (now != expected_first)
    return make_error(ErrorKind::mismatch, "code at {:#x} starts with {:#04x}, expected {:#04x}: something else changed it", addr, now,
                      expected_first);
  LG_TRY_VOID(add_site(addr, redirect));
  const uint8_t int3 = x86::kInt3;
  LG_TRY_VOID(write_code(addr, {&int3, 1}));
  return sync_cores();
}

Result<void> poke_finish(uint64_t addr, std::span<const uint8_t> bytes) {
  if (bytes.empty()) return ok_result();
  if (bytes.size() > 1) {
    LG_TRY_VOID(write_code(addr + 1, bytes.subspan(1)));
    LG_TRY_VOID(sync_cores());
  }
  LG_TRY_VOID(write_code(addr, bytes.subspan(0, 1)));
  return sync_cores();
}

Result<void> poke_undo(uint64_t addr, uint8_t orig_first) {
  LG_TRY_VOID(write_code(addr, {&orig_first, 1}));
  return sync_cores();
}

Result<void> text_poke(uint64_t addr, std::span<const uint8_t> old_bytes, std::span<const uint8_t> new_bytes, uint64_t redirect) {
  if (old_bytes.size() != new_bytes.size() || old_bytes.empty()) return make_error(ErrorKind::internal, "text_poke: bad sizes");
  if (std::memcmp(reinterpret_cast<const void*>(addr), old_bytes.data(), old_bytes.size()) != 0)
    return make_error(ErrorKind::mismatch, "code at {:#x} is not what livegraft wrote there: something else changed it", addr);
  LG_TRY_VOID(poke_begin(addr, old_bytes[0], redirect));
  return poke_finish(addr, new_bytes);
}

uint64_t trap_redirects() { return g_redirects.load(std::memory_order_relaxed); }

}  // namespace lg::agent
