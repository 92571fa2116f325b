// Unwinder: walks a stopped thread's user stack from its registers using the CFI (.eh_frame,
// .debug_frame) of every mapped ELF file, read through elfutils libdw (dwarf_getcfi_elf,
// dwarf_cfi_addrframe). *Reliable*: a frame it cannot explain (a PC in no known mapping, no
// FDE for a PC, an expression it cannot evaluate, a CFA that does not grow) fails the walk with
// the reason instead of guessing. Walks through signal frames (__restore_rt), threads blocked in
// syscalls, the vDSO, and patch code loaded by the agent (registered with add_code_region).
#pragma once

#include <sys/types.h>
#include <sys/user.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/proc_maps.h"
#include "common/remote.h"
#include "common/result.h"

namespace lg {

struct Frame {
  RemoteAddr pc;          // for frames after the first: the return address
  RemoteAddr cfa;         // canonical frame address of this frame (its caller's rsp before the call)
  bool signal_frame = false;  // this frame was interrupted by a signal (its pc is exact)
  // An address inside the instruction being executed: pc for the first frame and for frames
  // interrupted by a signal, pc - 1 (inside the call) for return addresses. Use it to decide
  // which function a frame is in: a call as a function's last instruction returns past its end.
  RemoteAddr lookup_pc;
  bool signal_trampoline = false;  // this frame is the kernel's signal frame (__restore_rt)
};

struct StackTrace {
  std::vector<Frame> frames;
  bool complete = false;      // reached the outermost frame (return address undefined in CFI, or 0)
  std::string stop_reason;    // when !complete: why the walk stopped
};

// Not thread-safe: use one Unwinder per controller thread (or serialize calls).
class Unwinder {
 public:
  // Reads /proc/PID/maps; ELF files and their CFI are opened lazily and cached (per file, by
  // inode), so that unwinding many threads costs one CFI parse per object.
  static Result<std::unique_ptr<Unwinder>> create(pid_t pid);
  ~Unwinder();

  // Opens every executable file mapped now (and the vDSO) with its CFI, which a walk would do
  // on its first frame there: call it before stopping threads, so that no stop waits for an
  // ELF file to be opened and read (docs/performance.md: the longest of 13 stops, 212 -> 111 us).
  void load_all_cfi();

  // Re-reads /proc/PID/maps (after the agent loaded something). Keeps caches of unchanged files.
  // unwind() does this by itself, once per walk, when a pc lies in no known executable file
  // mapping; call it after code was *replaced* at an address (dlclose + dlopen), which a walk
  // cannot notice.
  Result<void> refresh();

  // Code the agent loaded (a patch's sections): [lo,hi) holds code whose CFI is the .eh_frame
  // at [eh_frame, eh_frame+eh_frame_size) in the target's memory, already relocated.
  // The bytes are read now; a region whose CFI cannot be read or parsed is still registered, and a
  // walk reaching it stops (complete == false) with that reason. Regions take precedence over
  // /proc/PID/maps; registering the same [code.lo] again replaces the region.
  void add_code_region(RemoteRange code, RemoteAddr eh_frame, uint64_t eh_frame_size, std::string name);
  // A function inside a region (a patch's replacement): symbolize() names a pc in [range] after
  // it, "name+0x1d (patch P)", where it would say "region+0x1dd2".
  void add_code_symbol(RemoteRange range, std::string name);
  // A return address that ends a stack although its code has no CFI: the trampoline glibc's
  // makecontext(3) puts under a coroutine's entry function (__start_context, a local symbol
  // of libc without an FDE), which the agent finds (src/controller/stack_switching.cpp).
  void add_outermost_return(RemoteAddr ret);
  // Forgets the region starting at [code_lo] (the agent unloaded that patch). No-op if unknown.
  void remove_code_region(RemoteAddr code_lo);

  // Unwinds from [regs] (a thread stopped by the caller). Never throws; an error only for I/O
  // failures (process gone). An unexplained frame gives complete == false and stop_reason.
  Result<StackTrace> unwind(const user_regs_struct& regs, size_t max_frames = 512);

  // The mapping that holds [addr], reading /proc/PID/maps again once when none does (a thread
  // stack mapped since); nullopt when none does.
  std::optional<Mapping> mapping_of(RemoteAddr addr);

  // "func+0x12 (libfoo.so.1)"; "0x7f... (libfoo.so.1+0x1234)" when no function symbol covers
  // the pc (the link-time address, for offline symbolization); "0x7f... (no symbol)" outside any
  // file mapping; "region+0x40" in a code region. Uses .symtab/.dynsym of the mapped file, or the
  // separate debug file /usr/lib/debug/.build-id/xx/yyyy.debug of a stripped one.
  std::string symbolize(RemoteAddr pc);

 private:
  explicit Unwinder(pid_t pid);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lg
