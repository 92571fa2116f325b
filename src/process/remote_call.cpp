// Process::remote_call and Process::remote_syscall: make one of the target's threads run code
// for us, such that the thread is back exactly where it was afterwards, whether or not the
// controller survives (docs/injection.md).
//
// Corner cases (x86-64 SysV ABI, ptrace(2), the kernel's signal return path):
//  1. No fake return address, no return to address 0: the thread enters the called function
//     through a real `call` in a trampoline of ours and comes back into it; the trampoline
//     then signals the end with a marker syscall (a live controller stops it there) and
//     restores every register itself (a dead controller does not need to be there).
//  2. The called function runs on a stack in our own mapping (with a guard page below it), so
//     a thread with little stack left can be borrowed, and the red zone and everything else on
//     the thread's own stack is untouched. At the function's entry (rsp + 8) is 16-byte
//     aligned; rax = 0 says "no vector registers" to variadic callees; DF is clear.
//  3. Syscall restart (arch/x86/kernel/signal.c, arch_do_signal_or_restart): a thread stopped
//     inside a syscall that must be restarted has orig_rax = the syscall number and rax =
//     -ERESTARTSYS/-ERESTARTNOINTR/-ERESTARTNOHAND/-ERESTART_RESTARTBLOCK; the kernel rewinds
//     rip by 2 and reloads rax when the thread leaves the stop. The code we make it run carries
//     orig_rax = -1 so the kernel leaves those registers alone. A live controller writes the
//     saved registers back in an ordinary interrupt stop, so the kernel restarts the syscall as
//     if we had never been there; the self-restore path does the rewind itself
//     (remote_code::self_restore_registers). -ERESTART_RESTARTBLOCK (nanosleep, poll with a
//     timeout) restarts through the thread's restart_block, which the called function
//     overwrites if it is itself stopped inside such a syscall; then the interrupted syscall is
//     re-issued from the start instead (rax = -ERESTARTNOINTR: same registers, same arguments).
//  4. Signals: during a call the thread's asynchronous signals are blocked (PTRACE_SETSIGMASK
//     after the call registers are set), so they wait in the kernel rather than in the
//     controller; the trampoline puts the thread's own mask back right after the call, and
//     signals that arrived meanwhile are delivered there, as the kernel would (a dead
//     controller loses none). Others arriving while the thread runs our code are delivered too
//     (stop signals excepted: kept and raised again on resume). A kernel-raised
//     SIGSEGV/SIGBUS/SIGILL/SIGFPE/SIGTRAP (or abort()) means the called function crashed:
//     registers and mask are restored and the signal dropped, and the error says that the
//     locks the function took may still be held.
//  5. The called function (dlopen: memcpy, strlen) uses SSE/AVX registers, and the thread may
//     have been stopped in the middle of vector code: its extended state (NT_X86_XSTATE, the
//     standard XSAVE layout; man ptrace, arch/x86/kernel/ptrace.c) is saved before the call and
//     written back with the general registers (ptrace, or xrstor in the trampoline).
//  6. Every temporary change is a scope object (HijackedThread: registers; RemoteBytes: code
//     written into padding; RemoteArena: the trampoline mapping) that undoes it on every path
//     where undoing is safe, and reports when it cannot.
#include <elf.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/user.h>

#include <cstdio>
#include <optional>

#include "common/kill_point.h"
#include "common/proc_maps.h"
#include "elf/elf_file.h"
#include "process/process_internal.h"
#include "process/remote_code.h"

namespace lg {

namespace {

using Clock = std::chrono::steady_clock;
constexpr uint64_t kDirectionFlag = 1u << 10;
constexpr uint64_t kTrapFlag = 1u << 8;
constexpr uint64_t kPage = 4096;
constexpr uint64_t bit(int sig) { return uint64_t{1} << (sig - 1); }
// Every signal but the synchronous faults: blocking those would make the kernel reset their
// handler to SIG_DFL when the called function faults (kernel/signal.c, force_sig_info_to_task).
constexpr uint64_t kBlockedDuringCalls =
    ~(bit(SIGSEGV) | bit(SIGBUS) | bit(SIGILL) | bit(SIGFPE) | bit(SIGTRAP) | bit(SIGSYS) | bit(SIGKILL) | bit(SIGSTOP));

ExtendedState save_extended_state(pid_t tid) {
  ExtendedState buf(64 * 1024);
  iovec iov{buf.data(), buf.size()};
  if (::ptrace(PTRACE_GETREGSET, tid, reinterpret_cast<void*>(NT_X86_XSTATE), &iov) != 0) return {};
  buf.resize(iov.iov_len);
  return buf;
}

Result<void> write_extended_state(pid_t tid, const ExtendedState& state) {
  if (state.empty()) return ok_result();
  ExtendedState copy = state;
  iovec iov{copy.data(), copy.size()};
  if (::ptrace(PTRACE_SETREGSET, tid, reinterpret_cast<void*>(NT_X86_XSTATE), &iov) != 0)
    return make_errno_error(ErrorKind::io, "PTRACE_SETREGSET NT_X86_XSTATE of thread {}", tid);
  return ok_result();
}

// 7. Under a user shadow stack (CET, kernel >= 6.6) a call abandoned half-way (crash, timeout)
//    leaves its return addresses on the shadow stack: the shadow-stack pointer is saved and put
//    back with the registers (NT_X86_SHSTK, arch/x86/kernel/shstk.c; ENODEV when the thread has
//    no shadow stack).
constexpr unsigned kNtX86Shstk = 0x204;

std::optional<uint64_t> save_shadow_stack_pointer(pid_t tid) {
  uint64_t ssp = 0;
  iovec iov{&ssp, sizeof ssp};
  if (::ptrace(PTRACE_GETREGSET, tid, reinterpret_cast<void*>(kNtX86Shstk), &iov) != 0) return std::nullopt;
  return ssp;
}

Result<void> write_shadow_stack_pointer(pid_t tid, std::optional<uint64_t> ssp) {
  if (!ssp) return ok_result();
  uint64_t value = *ssp;
  iovec iov{&value, sizeof value};
  if (::ptrace(PTRACE_SETREGSET, tid, reinterpret_cast<void*>(kNtX86Shstk), &iov) != 0)
    return make_errno_error(ErrorKind::io, "PTRACE_SETREGSET NT_X86_SHSTK of thread {}", tid);
  return ok_result();
}

std::span<const uint8_t> as_bytes(const std::vector<uint8_t>& v) { return {v.data(), v.size()}; }

// The error [e], with a failed restore appended (never lost behind the first error).
Error with_restore_failure(Error e, const Result<void>& restored) {
  if (!restored) e.message += fmt::format("; putting the thread back failed too: {}", restored.error().message);
  return e;
}

}  // namespace

// A thread whose registers we changed: put back on every path (6.). restore() reports; the
// destructor (an early return) restores and prints a failure, since it cannot return it.
class HijackedThread {
 public:
  // Saves what [saved_regs] and [xstate] do not cover: the shadow-stack pointer and the mask.
  HijackedThread(Process& process, pid_t tid, const Registers& saved_regs, ExtendedState xstate)
      : process_(process), tid_(tid) {
    saved_.regs = saved_regs;
    saved_.xstate = std::move(xstate);
    saved_.ssp = save_shadow_stack_pointer(tid);
    uint64_t mask = 0;
    if (ptrace_req(PTRACE_GETSIGMASK, tid, sizeof mask, reinterpret_cast<uint64_t>(&mask)) == 0) saved_.sigmask = mask;
  }
  HijackedThread(const HijackedThread&) = delete;
  HijackedThread& operator=(const HijackedThread&) = delete;
  ~HijackedThread() {
    if (!armed_) return;
    auto r = restore();
    if (!r)
      std::fprintf(stderr, "livegraft: thread %d of process %d: %s\n", tid_, process_.pid(),
                   r.error().describe().c_str());
  }
  const SavedThreadState& saved() const { return saved_; }
  Result<void> restore() {
    armed_ = false;
    auto r = process_.put_back(tid_, saved_);
    if (!r)
      return std::move(r).error().context(
          fmt::format("putting thread {} back after remote code (if it runs again it restores itself)", tid_));
    return ok_result();
  }

 private:
  Process& process_;
  pid_t tid_;
  SavedThreadState saved_;
  bool armed_ = true;
};

namespace {

// Bytes written over [addr] whose previous content goes back when the scope ends, unless a
// thread may still be executing them (then they stay: they are never-executed padding).
class RemoteBytes {
 public:
  static Result<RemoteBytes> write(Process& process, RemoteAddr addr, std::span<const uint8_t> bytes) {
    std::vector<uint8_t> old(bytes.size());
    LG_TRY_VOID(process.read_memory(addr, old));
    RemoteBytes scope(process, addr, std::move(old));
    scope.armed_ = true;  // a partial write is undone too
    LG_TRY_VOID(process.write_memory(addr, bytes));
    return scope;
  }
  RemoteBytes(RemoteBytes&& o) noexcept : process_(o.process_), addr_(o.addr_), old_(std::move(o.old_)), armed_(o.armed_) {
    o.armed_ = false;
  }
  ~RemoteBytes() {
    if (!armed_) return;
    if (auto r = restore(); !r)
      std::fprintf(stderr, "livegraft: %s\n", r.error().describe().c_str());
  }
  Result<void> restore() {
    if (!armed_) return ok_result();
    armed_ = false;
    auto r = process_.write_memory(addr_, old_);
    if (!r) return std::move(r).error().context(fmt::format("restoring the bytes at {} in process {}", addr_, process_.pid()));
    return ok_result();
  }
  // A thread may still run them: leave them (harmless padding).
  void keep() { armed_ = false; }

 private:
  RemoteBytes(Process& p, RemoteAddr a, std::vector<uint8_t> old) : process_(p), addr_(a), old_(std::move(old)) {}
  Process& process_;
  RemoteAddr addr_;
  std::vector<uint8_t> old_;
  bool armed_ = false;
};

// The trampoline mapping (remote_code::ArenaLayout), mapped and unmapped with remote syscalls
// in the borrowed thread. Unmapped when the scope ends, except while marked in use: a thread
// may be running in it or an abandoned call's frames may be referred to; it then stays.
class RemoteArena {
 public:
  static Result<RemoteArena> map(Process& process, pid_t tid, const remote_code::ArenaLayout& layout) {
    LG_TRY(SyscallResult m, process.remote_syscall(tid, SYS_mmap,
                                                   {0, layout.size, PROT_READ | PROT_WRITE,
                                                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                                                    static_cast<uint64_t>(-1), 0}));
    if (m.is_error())
      return Error(ErrorKind::io,
                   fmt::format("mmap of {} bytes in process {} failed: {}", layout.size, process.pid(),
                               std::strerror(m.error())),
                   m.error());
    RemoteArena arena(process, tid, RemoteAddr(m.value), layout);
    kill_point("inject.arena_mapped");
    LG_TRY_VOID(process.write_memory(arena.base_, as_bytes(remote_code::trampoline_code(layout))));
    LG_TRY_VOID(arena.protect(layout.code_offset, kPage, PROT_READ | PROT_EXEC));
    LG_TRY_VOID(arena.protect(layout.guard_offset, kPage, PROT_NONE));
    kill_point("inject.arena_ready");
    return arena;
  }
  RemoteArena(RemoteArena&& o) noexcept
      : process_(o.process_), tid_(o.tid_), base_(o.base_), layout_(o.layout_), armed_(o.armed_), in_use_(o.in_use_) {
    o.armed_ = false;
  }
  ~RemoteArena() {
    if (!armed_) return;
    if (in_use_) {
      std::fprintf(stderr, "livegraft: the remote-call mapping at %#llx in process %d stays mapped (%llu bytes)\n",
                   static_cast<unsigned long long>(base_.value), process_.pid(),
                   static_cast<unsigned long long>(layout_.size));
      return;
    }
    if (auto r = unmap(); !r) std::fprintf(stderr, "livegraft: %s\n", r.error().describe().c_str());
  }
  RemoteAddr base() const { return base_; }
  RemoteAddr at(uint64_t offset) const { return base_ + static_cast<int64_t>(offset); }
  void set_in_use(bool in_use) { in_use_ = in_use; }
  Result<void> unmap() {
    armed_ = false;
    LG_TRY(SyscallResult r, process_.remote_syscall(tid_, SYS_munmap, {base_.value, layout_.size, 0, 0, 0, 0}));
    if (r.is_error())
      return Error(ErrorKind::io, fmt::format("munmap of the remote-call mapping at {} in process {}: {}", base_,
                                              process_.pid(), std::strerror(r.error())),
                   r.error());
    kill_point("inject.arena_unmapped");
    return ok_result();
  }

 private:
  RemoteArena(Process& p, pid_t tid, RemoteAddr base, const remote_code::ArenaLayout& layout)
      : process_(p), tid_(tid), base_(base), layout_(layout) {}
  Result<void> protect(uint64_t offset, uint64_t len, int prot) {
    LG_TRY(SyscallResult r, process_.remote_syscall(tid_, SYS_mprotect,
                                                    {at(offset).value, len, static_cast<uint64_t>(prot), 0, 0, 0}));
    if (r.is_error())
      return Error(ErrorKind::io, fmt::format("mprotect in process {}: {}", process_.pid(), std::strerror(r.error())),
                   r.error());
    return ok_result();
  }

  Process& process_;
  pid_t tid_;
  RemoteAddr base_;
  remote_code::ArenaLayout layout_;
  bool armed_ = true;
  bool in_use_ = false;
};

// Never-executed bytes for the syscall stub: the end of an executable PT_LOAD up to the end of
// its last page (zero padding in the file; nothing jumps or reads there). Writing them through
// /proc/PID/mem makes a private copy of that one page in the target.
Result<RemoteAddr> find_stub_site(pid_t pid) {
  LG_TRY(auto maps, read_proc_maps(pid));
  for (const Mapping& m : maps) {
    if (!m.exec || !m.is_file() || m.shared) continue;
    auto elf = ElfFile::open(fmt::format("/proc/{}/map_files/{:x}-{:x}", pid, m.range.lo.value, m.range.hi.value));
    if (!elf) elf = ElfFile::open(fmt::format("/proc/{}/root{}", pid, m.path));
    if (!elf || !elf->is_x86_64()) continue;
    auto vaddr = elf->vaddr_of_offset(m.offset);
    if (!vaddr) continue;
    const uint64_t bias = m.range.lo.value - *vaddr;
    for (const ElfSegment& s : elf->segments()) {
      if (s.type != PT_LOAD || !(s.flags & PF_X)) continue;
      const uint64_t end = bias + s.vaddr + s.memsz;
      const uint64_t site = (end + 15) & ~uint64_t{15};
      if (end <= m.range.lo.value || end > m.range.hi.value) continue;
      if (site + remote_code::kSyscallStubSize <= m.range.hi.value) return RemoteAddr(site);
    }
  }
  return make_error(ErrorKind::not_found,
                    "process {} has no executable mapping with {} bytes of padding after its code for a syscall stub",
                    pid, remote_code::kSyscallStubSize);
}

}  // namespace

Result<RemoteAddr> Process::stub_site() {
  if (!stub_site_) {
    LG_TRY(RemoteAddr site, find_stub_site(pid_));
    stub_site_ = site;
  }
  return *stub_site_;
}

Result<void> Process::put_back(pid_t tid, const SavedThreadState& saved) {
  const Registers& regs = saved.regs;
  LG_TRY_VOID(check_tracer_thread());
  ThreadInfo* t = find_thread(tid);
  if (!t) return make_error(ErrorKind::thread_died, "thread {} of process {} exited while running remote code", tid, pid_);
  const bool clobbered = t->call_clobbered_restart_block;
  t->want = ThreadWant::stop;
  t->call_abort = false;
  t->call_marker_rip = 0;
  t->call_clobbered_restart_block = false;
  // Leave a syscall or signal-delivery stop (its signal suppressed), or the running code, for
  // an ordinary interrupt stop: the stop happens in the kernel before the thread reaches user
  // space, and it is the kind of stop the thread was in before, where the kernel restarts an
  // interrupted syscall from the registers we write (3.).
  if (!t->stopped || t->kind != StopKind::trap) {
    ptrace_req(PTRACE_INTERRUPT, tid);
    if (t->stopped) {
      if (ptrace_req(PTRACE_CONT, tid, 0, 0) != 0)
        return make_errno_error(ErrorKind::io, "leaving the remote-code stop of thread {}", tid);
      t->stopped = false;
    }
    LG_TRY_VOID(wait_stopped({tid}, std::chrono::seconds(2)));
    t = find_thread(tid);
    if (!t) return make_error(ErrorKind::thread_died, "thread {} of process {} exited after remote code", tid, pid_);
  }
  Registers restore = regs;
  if (clobbered && regs.rax == kERestartRestartBlock && static_cast<int64_t>(regs.orig_rax) >= 0)
    restore.rax = kERestartNoIntr;  // 3.
  LG_TRY_VOID(write_extended_state(tid, saved.xstate));
  LG_TRY_VOID(set_regs(tid, restore));
  LG_TRY_VOID(write_shadow_stack_pointer(tid, saved.ssp));  // 7.
  if (saved.sigmask) {  // 4.
    uint64_t mask = *saved.sigmask;
    if (ptrace_req(PTRACE_SETSIGMASK, tid, sizeof mask, reinterpret_cast<uint64_t>(&mask)) != 0)
      return make_errno_error(ErrorKind::io, "PTRACE_SETSIGMASK of thread {}", tid);
  }
  return ok_result();
}

Result<void> Process::run_until_marker(pid_t tid, RemoteAddr marker_rip, std::chrono::milliseconds timeout,
                                       const char* started_kill_point) {
  ThreadInfo* t = find_thread(tid);
  t->want = ThreadWant::call;
  t->call_marker_rip = marker_rip.value;
  t->call_result = 0;
  t->call_outcome = CallOutcome::none;
  t->call_abort = false;
  t->call_signal = 0;
  t->call_fault_pc = 0;
  t->call_clobbered_restart_block = false;
  if (ptrace_req(PTRACE_SYSCALL, tid, 0, 0) != 0) {
    int err = errno;
    return Error(err == ESRCH ? ErrorKind::thread_died : ErrorKind::io,
                 fmt::format("starting remote code in thread {}: {}", tid, std::strerror(err)), err);
  }
  t->stopped = false;
  kill_point(started_kill_point);

  const auto deadline = Clock::now() + timeout;
  auto abort_deadline = Clock::time_point::max();
  PollBackoff backoff;
  for (unsigned pass = 1;; ++pass) {
    ThreadInfo* cur = find_thread(tid);
    if (!cur) return make_error(ErrorKind::thread_died, "thread {} of process {} exited during remote code", tid, pid_);
    if (cur->stopped) return ok_result();
    auto now = Clock::now();
    if (!cur->call_abort && now >= deadline) {
      cur->call_abort = true;
      ptrace_req(PTRACE_INTERRUPT, tid);
      abort_deadline = now + std::chrono::seconds(2);
    }
    if (now >= abort_deadline)
      return make_error(ErrorKind::timeout,
                        "remote code in thread {} of process {} timed out and the thread did not stop again", tid,
                        pid_);
    if (injected_fault("run_until_marker", tid))
      return make_error(ErrorKind::io, "waiting for remote code in thread {}: injected fault", tid);
    // Other threads' clone events and signals are serviced now and then: the called function
    // may wait for a lock held by one of them.
    LG_TRY(bool progressed, poll_pass(pass % 16 == 0 ? 0 : tid));
    if (progressed)
      backoff.progressed();
    else
      backoff.idle();
  }
}

Result<SyscallResult> Process::remote_syscall(pid_t tid, long nr, std::array<uint64_t, 6> args,
                                              std::chrono::milliseconds timeout) {
  LG_TRY_VOID(stopped_thread(tid));
  LG_TRY(const RemoteAddr site, stub_site());
  LG_TRY(const Registers saved, get_regs(tid));
  const remote_code::SyscallStub stub = remote_code::syscall_stub(site, remote_code::self_restore_registers(saved));
  LG_TRY(RemoteBytes code, RemoteBytes::write(*this, site, as_bytes(stub.bytes)));
  kill_point("inject.syscall_stub_written");

  Registers regs = saved;
  regs.rip = site.value;
  regs.rax = static_cast<uint64_t>(nr);
  regs.orig_rax = static_cast<uint64_t>(-1);  // 3.
  regs.eflags &= ~kTrapFlag;
  regs.rdi = args[0];
  regs.rsi = args[1];
  regs.rdx = args[2];
  regs.r10 = args[3];
  regs.r8 = args[4];
  regs.r9 = args[5];
  HijackedThread hijack(*this, tid, saved, {});  // a syscall leaves the vector registers alone
  {
    auto set = set_regs(tid, regs);
    if (!set) {
      code.keep();  // we do not know what the thread runs now
      return with_restore_failure(std::move(set).error(), hijack.restore());
    }
  }
  kill_point("inject.syscall_regs_set");
  auto ran = run_until_marker(tid, site + static_cast<int64_t>(stub.marker_end_offset), timeout,
                              "inject.syscall_started");
  ThreadInfo* t = find_thread(tid);
  const bool returned = ran && t && t->call_outcome == CallOutcome::returned;
  const SyscallResult result{returned ? t->call_result : 0};
  if (returned) kill_point("inject.syscall_returned");
  auto restored = hijack.restore();
  if (!restored) {
    code.keep();
    if (!ran) return with_restore_failure(std::move(ran).error(), restored);
    return std::move(restored).error();
  }
  kill_point("inject.syscall_restored");
  LG_TRY_VOID(code.restore());
  if (!ran) return std::move(ran).error();
  if (!returned)
    return make_error(ErrorKind::io, "remote syscall {} in thread {} of process {} did not complete (signal {}); "
                      "registers restored", nr, tid, pid_, t ? t->call_signal : 0);
  return result;
}

Result<uint64_t> Process::remote_call(pid_t tid, RemoteAddr fn, std::span<const RemoteArg> args,
                                      std::chrono::milliseconds timeout) {
  LG_TRY_VOID(stopped_thread(tid));
  if (args.size() > 6)
    return make_error(ErrorKind::invalid_argument, "remote call with {} arguments: at most 6 are supported", args.size());
  if (fn.is_null()) return make_error(ErrorKind::invalid_argument, "remote call of a null function");

  LG_TRY(const Registers saved, get_regs(tid));
  ExtendedState saved_ext = save_extended_state(tid);  // 5.
  const auto layout = remote_code::ArenaLayout::for_xstate(saved_ext.size());
  LG_TRY(RemoteArena arena, RemoteArena::map(*this, tid, layout));

  uint64_t saved_mask = 0;
  if (ptrace_req(PTRACE_GETSIGMASK, tid, sizeof saved_mask, reinterpret_cast<uint64_t>(&saved_mask)) != 0)
    return make_errno_error(ErrorKind::io, "PTRACE_GETSIGMASK of thread {}", tid);
  // The data block: what the trampoline restores if it has to do it itself.
  LG_TRY_VOID(write_memory(arena.at(layout.data_offset),
                           as_bytes(remote_code::trampoline_data(layout, remote_code::self_restore_registers(saved),
                                                                 remote_code::xrstor_mask_of(saved_ext), saved_ext,
                                                                 saved_mask))));
  uint64_t sp = arena.at(layout.stack_top()).value;  // 2.
  uint64_t values[6] = {};
  for (size_t i = 0; i < args.size(); ++i) {
    if (!args[i].bytes) {
      values[i] = args[i].value;
      continue;
    }
    const std::string& bytes = *args[i].bytes;
    sp = (sp - bytes.size()) & ~uint64_t{15};
    LG_TRY_VOID(write_memory(RemoteAddr(sp), std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()),
                                                                       bytes.size())));
    values[i] = sp;
  }
  sp &= ~uint64_t{15};
  kill_point("inject.trampoline_written");

  Registers regs = saved;
  regs.rsp = sp;
  regs.rip = arena.at(layout.code_offset).value;
  regs.r11 = fn.value;
  regs.rax = 0;
  regs.orig_rax = static_cast<uint64_t>(-1);  // 3.
  regs.eflags &= ~(kDirectionFlag | kTrapFlag);
  regs.rdi = values[0];
  regs.rsi = values[1];
  regs.rdx = values[2];
  regs.rcx = values[3];
  regs.r8 = values[4];
  regs.r9 = values[5];
  arena.set_in_use(true);
  HijackedThread hijack(*this, tid, saved, saved_ext);
  {
    auto set = set_regs(tid, regs);
    if (!set) return with_restore_failure(std::move(set).error(), hijack.restore());
    // 4. Only now (the trampoline puts the mask back on every path from here on): asynchronous
    //    signals wait in the kernel while the function runs, and are delivered after it.
    uint64_t mask = saved_mask | kBlockedDuringCalls;
    if (ptrace_req(PTRACE_SETSIGMASK, tid, sizeof mask, reinterpret_cast<uint64_t>(&mask)) != 0)
      return with_restore_failure(make_errno_error(ErrorKind::io, "PTRACE_SETSIGMASK of thread {}", tid),
                                  hijack.restore());
  }
  kill_point("inject.call_regs_set");

  auto ran = run_until_marker(tid, arena.at(layout.code_offset + remote_code::trampoline_marker_end_offset()), timeout,
                              "inject.call_started");
  ThreadInfo* t = find_thread(tid);
  const CallOutcome outcome = ran && t ? t->call_outcome : CallOutcome::none;
  const uint64_t result = t ? t->call_result : 0;
  const int crash_signal = t ? t->call_signal : 0;
  const uint64_t fault_pc = t ? t->call_fault_pc : 0;
  if (outcome == CallOutcome::returned) kill_point("inject.call_returned");
  auto restored = hijack.restore();
  if (!ran) return with_restore_failure(std::move(ran).error(), restored);
  if (!restored) return std::move(restored).error();
  kill_point("inject.call_restored");

  switch (outcome) {
    case CallOutcome::returned:
      arena.set_in_use(false);
      LG_TRY_VOID(arena.unmap());
      return result;
    case CallOutcome::crashed: {
      // 4. The thread is back where it was, but the function was abandoned half-way.
      std::string where;
      if (auto maps = read_proc_maps(pid_))
        for (const Mapping& m : *maps)
          if (m.range.contains(RemoteAddr(fault_pc))) where = m.path.empty() ? "an anonymous mapping" : m.path;
      const bool in_loader = where.find("/ld-linux") != std::string::npos || where.find("/ld-") != std::string::npos;
      return Error(ErrorKind::unsafe,
                   fmt::format("remote call of {} in thread {} of process {} crashed with signal {} ({}) at pc {:#x}{}; "
                               "the thread's registers were put back, but the call was abandoned half-way: locks it "
                               "took{} may still be held, so the process may hang on its next one",
                               fn, tid, pid_, crash_signal,
                               sigabbrev_np(crash_signal) ? sigabbrev_np(crash_signal) : "?", fault_pc,
                               where.empty() ? "" : fmt::format(" in {}", where),
                               in_loader ? " (the dynamic loader's lock: dlopen, dlsym)" : ""),
                   0, "restart the process when convenient; preloading the agent (LD_PRELOAD) avoids remote calls");
    }
    case CallOutcome::interrupted:
    case CallOutcome::none:
      break;
  }
  return Error(ErrorKind::timeout,
               fmt::format("remote call of {} in thread {} of process {} did not return within {} ms; it was "
                           "interrupted and the registers restored (locks it took may still be held)",
                           fn, tid, pid_, timeout.count()));
}

}  // namespace lg
