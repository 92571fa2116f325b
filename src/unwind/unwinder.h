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
#include <string>
#include <vector>

#include "common/remote.h"
#include "common/result.h"

namespace lg {

struct Frame {
  RemoteAddr pc;          // for frames after the first: the return address
  RemoteAddr cfa;         // canonical frame address of this frame (0 if unknown)
  bool signal_frame = false;  // this frame was interrupted by a signal (its pc is exact)
};

struct StackTrace {
  std::vector<Frame> frames;
  bool complete = false;      // reached the outermost frame (return address undefined in CFI)
  std::string stop_reason;    // when !complete: why the walk stopped
};

class Unwinder {
 public:
  // Reads /proc/PID/maps; ELF files and their CFI are opened lazily and cached (per file, by
  // inode), so that unwinding many threads costs one CFI parse per object.
  static Result<std::unique_ptr<Unwinder>> create(pid_t pid);
  ~Unwinder();

  // Re-reads /proc/PID/maps (after the agent loaded something). Keeps caches of unchanged files.
  Result<void> refresh();

  // Code the agent loaded (a patch's sections): [lo,hi) holds code whose CFI is the .eh_frame
  // at [eh_frame, eh_frame+eh_frame_size) in the target's memory, already relocated.
  void add_code_region(RemoteRange code, RemoteAddr eh_frame, uint64_t eh_frame_size, std::string name);

  // Unwinds from [regs] (a thread stopped by the caller). Never throws; an error only for I/O
  // failures (process gone). An unexplained frame gives complete == false and stop_reason.
  Result<StackTrace> unwind(const user_regs_struct& regs, size_t max_frames = 512);

  // "func+0x12 (libfoo.so.1)" or "0x7f... (no symbol)"; uses .symtab/.dynsym of the mapping.
  std::string symbolize(RemoteAddr pc);

 private:
  explicit Unwinder(pid_t pid);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lg
