// User-space stack switching (docs/consistency.md, "Stack switching"): coroutines, fibers and
// green threads keep suspended frames on stacks that no thread's registers point to, so a
// thread can look clean while a suspended coroutine sits inside an affected function.
//
// Before a process is touched, check_stack_switching() looks for the well-known switching
// primitives in every mapped object (imported, or defined outside libc). A process that has
// them is refused unless its scheduler declared its suspended contexts to the agent
// (include/livegraft/safepoint.h: livegraft_coroutines_declare, livegraft_swapcontext) or the
// user passed --allow-stack-switching. Declared contexts are then checked like threads by both
// models (context_blockers()).
#pragma once

#include <sys/types.h>
#include <sys/user.h>

#include <optional>
#include <string>
#include <vector>

#include "common/remote.h"
#include "common/result.h"
#include "controller/operations.h"
#include "controller/process_image.h"
#include "controller/transition.h"
#include "unwind/unwinder.h"

namespace lg {

struct StackSwitchingUse {
  std::string object;  // the mapped object's path
  std::string symbol;  // swapcontext, jump_fcontext, ...
  bool defines = false;  // it defines the primitive (else imports it)
};

// Every use of a known switching primitive by the objects mapped in [image]. libc's own
// definitions and the livegraft agent (whose livegraft_swapcontext records what it switches)
// do not count.
Result<std::vector<StackSwitchingUse>> find_stack_switching(ProcessImage& image);

// The agent's table of suspended contexts in process memory (exported `livegraft_context_table`).
struct ContextTableRef {
  RemoteAddr header;
  RemoteAddr slots;
  uint64_t capacity = 0;
  bool declared = false;
  RemoteAddr start_context{0};  // makecontext's trampoline: a coroutine stack's end (0: unknown)
};
Result<std::optional<ContextTableRef>> find_context_table(pid_t pid, ProcessImage& image);

// What the switch of [pid] must do about stack switching: nothing (no primitive, or the user
// allowed it: nullopt), or check the declared contexts of the table it returns. Error `unsafe`
// names the object and symbol and the ways out.
Result<std::optional<ContextTableRef>> check_stack_switching(pid_t pid, bool allowed_by_user);

struct SuspendedContext {
  uint64_t key = 0;  // the ucontext_t* the program passed
  pid_t tid = 0;     // the thread that suspended it
  user_regs_struct regs{};
};
// The contexts suspended now. Error `unsafe` when some suspended context found no slot.
Result<std::vector<SuspendedContext>> read_suspended_contexts(pid_t pid, const ContextTableRef& table);

// The suspended contexts (of thread [only_tid] when given) that have a frame in [affected] or
// cannot be unwound reliably, as blockers (tid = the thread that suspended the context).
Result<std::vector<Blocker>> context_blockers(pid_t pid, const ContextTableRef& table, Unwinder& unwinder,
                                              const std::vector<RemoteRange>& affected,
                                              std::optional<pid_t> only_tid = std::nullopt);

// Tells [unwinder] where coroutine stacks end (makecontext's trampoline, as the agent found
// it), so that a thread running on a coroutine's stack unwinds completely. No agent: nothing.
void register_coroutine_stack_ends(pid_t pid, Unwinder& unwinder);

// Stack switching nobody detected or declared: a complete walk of thread [tid] must end on the
// thread's own stack — the main thread's "[stack]", another thread's the mapping that holds
// its TCB at [fs_base] (glibc puts struct pthread at the top of the stack it allocates, or of
// the stack the program gave it). A walk that ends elsewhere ran on a stack the program
// switched to by itself (a coroutine or fiber whose entry ends the CFI chain): the thread's own
// stack, suspended, may hold anything. Returns the reason to keep the thread pending, or
// nullopt. Adjacent mappings the kernel merged can hide a switch (best effort).
std::optional<std::string> off_own_stack(pid_t pid, pid_t tid, uint64_t fs_base, const StackTrace& trace, Unwinder& unwinder);

// Whether the transitions of [options] check off_own_stack: no coroutine contexts declared and
// no --allow-stack-switching.
inline bool checks_own_stacks(const OperationOptions& options) { return !options.allow_stack_switching && !options.context_check; }

// [options] with context_check set when the process's scheduler declared its contexts, after
// check_stack_switching() (error: refused). Called by apply and revert before anything else.
Result<OperationOptions> with_stack_switching_check(pid_t pid, const OperationOptions& options);

}  // namespace lg
