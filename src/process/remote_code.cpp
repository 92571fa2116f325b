// The stub and trampoline code of remote_code.h, encoded by hand (a few fixed instructions;
// every memory operand is rip-relative to a data slot at a known offset).
#include "process/remote_code.h"

#include <algorithm>
#include <cstring>
#include <initializer_list>

namespace lg::remote_code {

namespace {

constexpr int64_t kERestartSys = -512, kERestartNoIntr = -513, kERestartNoHand = -514, kERestartRestartBlock = -516;
constexpr uint64_t kAmxFeatures = (1ull << 17) | (1ull << 18);
constexpr uint32_t kFpXstateMagic1 = 0x46505853;  // arch/x86/include/uapi/asm/sigcontext.h

// The general registers the restore code loads from slots, in slot order (rsp is separate).
enum Reg : uint8_t { rax = 0, rcx = 1, rdx = 2, rbx = 3, rsp = 4, rbp = 5, rsi = 6, rdi = 7,
                     r8, r9, r10, r11, r12, r13, r14, r15 };
constexpr Reg kSlotRegs[] = {rax, rcx, rdx, rbx, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15};
constexpr size_t kGprSlots = sizeof kSlotRegs / sizeof kSlotRegs[0];

uint64_t value_of(const user_regs_struct& r, Reg reg) {
  switch (reg) {
    case rax: return r.rax;
    case rcx: return r.rcx;
    case rdx: return r.rdx;
    case rbx: return r.rbx;
    case rsp: return r.rsp;
    case rbp: return r.rbp;
    case rsi: return r.rsi;
    case rdi: return r.rdi;
    case r8: return r.r8;
    case r9: return r.r9;
    case r10: return r.r10;
    case r11: return r.r11;
    case r12: return r.r12;
    case r13: return r.r13;
    case r14: return r.r14;
    case r15: return r.r15;
  }
  return 0;
}

// Appends instructions; rip-relative operands name their target as an offset in the same
// address space as the code's own offsets.
class Emitter {
 public:
  explicit Emitter(std::vector<uint8_t>& out) : out_(out) {}
  uint64_t pos() const { return out_.size(); }
  void raw(std::initializer_list<uint8_t> b) { out_.insert(out_.end(), b); }
  // An instruction ending in a disp32 that addresses [target].
  void rip_rel(std::initializer_list<uint8_t> head, uint64_t target) {
    raw(head);
    const int64_t disp = static_cast<int64_t>(target) - static_cast<int64_t>(pos() + 4);
    const int32_t d = static_cast<int32_t>(disp);
    uint8_t b[4];
    std::memcpy(b, &d, 4);
    out_.insert(out_.end(), b, b + 4);
  }
  void mov_load(Reg reg, uint64_t target) {  // mov reg64, [rip + disp32]
    rip_rel({static_cast<uint8_t>(reg >= r8 ? 0x4c : 0x48), 0x8b, static_cast<uint8_t>(((reg & 7) << 3) | 5)},
            target);
  }
  void marker() {
    raw({0x48, 0x89, 0xc7});                    // mov rdi, rax (the result, for the controller)
    raw({0xb8, static_cast<uint8_t>(kMarkerSyscall), 0, 0, 0});  // mov eax, MARKER
    raw({0x0f, 0x05});                          // syscall
  }

 private:
  std::vector<uint8_t>& out_;
};

void put64(std::vector<uint8_t>& out, uint64_t offset, uint64_t v) { std::memcpy(out.data() + offset, &v, 8); }

// Trampoline data block slots (offsets inside the block).
constexpr uint64_t kSlotRsp = kGprSlots * 8, kSlotRip = kSlotRsp + 8, kSlotFlags = kSlotRip + 8,
                   kSlotMask = kSlotFlags + 8, kSlotSigmask = kSlotMask + 8;
constexpr uint64_t kXstateInData = 256;  // 64-byte aligned, after the slots

// Stub layout: code first, data slots at kStubData.
constexpr uint64_t kStubData = 128;
constexpr uint64_t kStubSlotRip = kStubData + kGprSlots * 8;

}  // namespace

user_regs_struct self_restore_registers(const user_regs_struct& saved) {
  user_regs_struct r = saved;
  if (static_cast<int64_t>(saved.orig_rax) < 0) return r;
  switch (static_cast<int64_t>(saved.rax)) {
    case kERestartSys:
    case kERestartNoIntr:
    case kERestartNoHand:
      r.rax = saved.orig_rax;
      r.rip -= 2;
      break;
    case kERestartRestartBlock:
      r.rax = SYS_restart_syscall;
      r.rip -= 2;
      break;
    default:
      break;
  }
  return r;
}

SyscallStub syscall_stub(RemoteAddr /*site*/, const user_regs_struct& restore) {
  std::vector<uint8_t> code;
  Emitter e(code);
  e.raw({0x0f, 0x05});  // syscall: the requested one, registers set by the controller
  e.marker();
  const uint64_t marker_end = e.pos();
  for (size_t i = 0; i < kGprSlots; ++i) e.mov_load(kSlotRegs[i], kStubData + i * 8);
  e.rip_rel({0xff, 0x25}, kStubSlotRip);  // jmp [rip slot]
  code.resize(kSyscallStubSize, 0xcc);
  for (size_t i = 0; i < kGprSlots; ++i) put64(code, kStubData + i * 8, value_of(restore, kSlotRegs[i]));
  put64(code, kStubSlotRip, restore.rip);
  return SyscallStub{std::move(code), marker_end};
}

ArenaLayout ArenaLayout::for_xstate(uint64_t xstate_size) {
  ArenaLayout l;
  l.stack_size = kArenaStackSize;
  l.data_offset = l.stack_offset + l.stack_size;
  l.xstate_offset = kXstateInData;
  uint64_t data_size = kXstateInData + std::max<uint64_t>(xstate_size, 4096);
  data_size = (data_size + 4095) & ~uint64_t{4095};
  l.size = l.data_offset + data_size;
  return l;
}

namespace {

std::vector<uint8_t> build_trampoline(const ArenaLayout& layout, uint64_t* marker_end) {
  std::vector<uint8_t> code;
  Emitter e(code);
  const uint64_t d = layout.data_offset;
  e.raw({0x41, 0xff, 0xd3});  // call *%r11
  // The controller blocked the asynchronous signals for the call (PTRACE_SETSIGMASK): put the
  // thread's own mask back, so that signals that arrived meanwhile are delivered now, here,
  // whether or not a controller is still there.
  e.raw({0x49, 0x89, 0xc4});                     // mov r12, rax
  e.raw({0xb8, SYS_rt_sigprocmask, 0, 0, 0});     // mov eax, SYS_rt_sigprocmask
  e.raw({0xbf, 2 /* SIG_SETMASK */, 0, 0, 0});   // mov edi, SIG_SETMASK
  e.rip_rel({0x48, 0x8d, 0x35}, d + kSlotSigmask);  // lea rsi, [sigmask]
  e.raw({0x31, 0xd2});                           // xor edx, edx
  e.raw({0x41, 0xba, 8, 0, 0, 0});               // mov r10d, 8 (sizeof the kernel's sigset)
  e.raw({0x0f, 0x05});                           // syscall
  e.raw({0x4c, 0x89, 0xe0});                     // mov rax, r12
  e.marker();
  *marker_end = e.pos();
  // Self-restore (the controller is gone, or let the thread go): vector state first (it needs
  // eax/edx), then flags (popfq needs the stack, still ours), then the general registers, rsp
  // last, and an indirect jmp through memory back to the interrupted code.
  e.rip_rel({0x8b, 0x05}, d + kSlotMask);      // mov eax, [mask lo]
  e.rip_rel({0x8b, 0x15}, d + kSlotMask + 4);  // mov edx, [mask hi]
  e.rip_rel({0x48, 0x0f, 0xae, 0x2d}, d + layout.xstate_offset);  // xrstor64 [xstate]
  e.rip_rel({0xff, 0x35}, d + kSlotFlags);  // push qword [rflags]
  e.raw({0x9d});                            // popfq
  for (size_t i = 0; i < kGprSlots; ++i) e.mov_load(kSlotRegs[i], d + i * 8);
  e.mov_load(rsp, d + kSlotRsp);
  e.rip_rel({0xff, 0x25}, d + kSlotRip);  // jmp [rip slot]
  code.resize(4096, 0xcc);
  return code;
}

}  // namespace

std::vector<uint8_t> trampoline_code(const ArenaLayout& layout) {
  uint64_t marker_end = 0;
  return build_trampoline(layout, &marker_end);
}

uint64_t trampoline_marker_end_offset() {
  uint64_t marker_end = 0;
  (void)build_trampoline(ArenaLayout::for_xstate(0), &marker_end);  // lengths do not depend on the layout
  return marker_end;
}

std::vector<uint8_t> trampoline_data(const ArenaLayout& layout, const user_regs_struct& restore,
                                     uint64_t xrstor_mask, const std::vector<uint8_t>& xstate, uint64_t sigmask) {
  std::vector<uint8_t> data(layout.xstate_offset + std::max<size_t>(xstate.size(), 576), 0);
  for (size_t i = 0; i < kGprSlots; ++i) put64(data, i * 8, value_of(restore, kSlotRegs[i]));
  put64(data, kSlotRsp, restore.rsp);
  put64(data, kSlotRip, restore.rip);
  put64(data, kSlotFlags, restore.eflags);
  // Without an XSAVE image the mask is 0: xrstor then restores nothing (a zero header is valid).
  put64(data, kSlotMask, xstate.empty() ? 0 : xrstor_mask);
  put64(data, kSlotSigmask, sigmask);
  if (!xstate.empty()) std::memcpy(data.data() + layout.xstate_offset, xstate.data(), xstate.size());
  return data;
}

uint64_t xrstor_mask_of(const std::vector<uint8_t>& xstate) {
  if (xstate.size() < 576) return 0;
  uint32_t magic = 0;
  uint64_t xfeatures = 0, bv = 0;
  std::memcpy(&magic, xstate.data() + 464, 4);
  std::memcpy(&xfeatures, xstate.data() + 472, 8);
  std::memcpy(&bv, xstate.data() + 512, 8);
  if (magic != kFpXstateMagic1 || xfeatures == 0) return bv | 3;
  return (xfeatures & ~kAmxFeatures) | (bv & kAmxFeatures);
}

}  // namespace lg::remote_code
