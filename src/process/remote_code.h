// Private to lg_process: the machine code a hijacked thread runs for a remote syscall or a
// remote call, and the data block it restores the thread from (docs/injection.md).
//
// Both pieces of code end the same way: a *marker* syscall (getpid, harmless when nobody traces
// the thread) whose syscall-entry stop tells a live controller that the work is done, followed
// by code that puts every register back and jumps to where the thread was interrupted. A
// controller that is alive stops the thread at the marker and restores the registers itself
// with ptrace (exactly, letting the kernel restart an interrupted syscall); a controller that
// died lets the thread run on through the restore code. There is no fake return address and
// no return to address 0 anywhere.
#pragma once

#include <sys/syscall.h>
#include <sys/user.h>

#include <cstdint>
#include <vector>

#include "common/remote.h"

namespace lg::remote_code {

// The marker syscall: getpid has no effect and no failure mode.
constexpr long kMarkerSyscall = SYS_getpid;

// Where an interrupted thread must continue so that it resumes "exactly where it was" without
// the kernel's help: a thread stopped inside a syscall that the kernel would restart
// (orig_rax >= 0, rax = -ERESTARTSYS/-ERESTARTNOINTR/-ERESTARTNOHAND) goes back to its
// `syscall` instruction (rip - 2) with rax = orig_rax; -ERESTART_RESTARTBLOCK goes there with
// rax = __NR_restart_syscall (arch/x86/kernel/signal.c, arch_do_signal_or_restart). A thread
// the controller restores with ptrace does not need this: the kernel does it on resume.
user_regs_struct self_restore_registers(const user_regs_struct& saved);

// The kill-safe syscall stub, written into never-executed padding at the end of an executable
// segment (see find_stub_site). Layout: code, then data slots read rip-relatively.
//   syscall ; mov rdi, rax ; mov eax, MARKER ; syscall ; <marker_end> ;
//   mov <every gpr but rsp>, [slot] ; jmp [rip slot]
// The stub does not touch the stack or the flags (syscall/sysret keep rflags), so a thread
// that runs it to the end is exactly the thread it was, plus the syscall's effect.
struct SyscallStub {
  std::vector<uint8_t> bytes;    // code + data, ready to write at the site
  uint64_t marker_end_offset;    // rip at the marker's syscall-entry stop
};
constexpr uint64_t kSyscallStubSize = 256;
SyscallStub syscall_stub(RemoteAddr site, const user_regs_struct& restore);

// The call trampoline, in a mapping of its own (the arena):
//   page 0      code (r-x):  call *%r11 ; rt_sigprocmask(SIG_SETMASK, [sigmask]) ;
//                            mov rdi, <result> ; mov eax, MARKER ; syscall ;
//                            <marker_end> ; xrstor64 [xstate] (mask in edx:eax) ;
//                            push [rflags] ; popfq ; mov <every gpr but rsp>, [slot] ;
//                            mov rsp, [rsp slot] ; jmp [rip slot]
//   page 1      guard (---)
//   pages 2..   the call's stack (rw), kStackSize bytes, its top 16-byte aligned
//   last pages  data (rw): the saved registers, then the XSAVE image (64-byte aligned)
// `call` is a real call (its return matches under a shadow stack); the called function runs
// on the arena's stack, so a thread with little stack left can still be borrowed.
struct ArenaLayout {
  uint64_t code_offset = 0;
  uint64_t guard_offset = 0x1000;
  uint64_t stack_offset = 0x2000;
  uint64_t stack_size = 0;
  uint64_t data_offset = 0;
  uint64_t xstate_offset = 0;  // inside the data block
  uint64_t size = 0;           // the whole mapping
  static ArenaLayout for_xstate(uint64_t xstate_size);
  uint64_t stack_top() const { return stack_offset + stack_size; }
};
constexpr uint64_t kArenaStackSize = 256 * 1024;

// Code page bytes for an arena at [arena] (displacements depend only on the layout).
std::vector<uint8_t> trampoline_code(const ArenaLayout& layout);
// rip at the marker's syscall-entry stop, relative to the arena.
uint64_t trampoline_marker_end_offset();
// The data block: registers to restore (already self-restore adjusted), the xrstor mask, the
// XSAVE image (may be empty: the trampoline then skips xrstor and says so in its mask = 0), the
// thread's own signal mask (put back right after the call).
std::vector<uint8_t> trampoline_data(const ArenaLayout& layout, const user_regs_struct& restore,
                                     uint64_t xrstor_mask, const std::vector<uint8_t>& xstate, uint64_t sigmask);

// The mask for xrstor from an NT_X86_XSTATE image: every user feature the kernel enables
// (xstate_fx_sw_bytes.xfeatures at offset 472), except the AMX components a thread may not have
// permission for (bits 17, 18) unless the image has them in use. 0 when the image is too short.
uint64_t xrstor_mask_of(const std::vector<uint8_t>& xstate);

}  // namespace lg::remote_code
