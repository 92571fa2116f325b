// Seccomp and injection: does a thread's seccomp filter let it make the syscalls that a remote
// dlopen of the agent and the agent's start make? (docs/injection.md, "Seccomp").
#pragma once

#include <linux/filter.h>
#include <sys/types.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/result.h"

namespace lg {

// The syscalls injection makes in the borrowed thread (remote mmap/mprotect/munmap/getpid),
// dlopen makes there, and the agent makes in its control thread (a child of the borrowed
// thread, so under the same filters): starting, serving its socket, loading patches.
std::span<const int> syscalls_needed_for_injection();

// What a classic-BPF seccomp program can return for syscall [nr] on x86-64 with arguments and
// instruction pointer unknown: every action (SECCOMP_RET_ACTION_FULL part) a path can reach.
// A program that cannot be followed (a bad instruction, a return of an unknown A, too many
// paths) is an error.
Result<std::vector<uint32_t>> seccomp_actions_for(std::span<const sock_filter> program, int nr);

// Refuses (kind unsupported, naming the syscall and the filter's action) unless every seccomp
// filter of thread [tid], which must be ptrace-stopped by us, allows every needed syscall for
// any arguments. Strict mode (Seccomp: 1) is always refused. Reading filters needs
// CAP_SYS_ADMIN (PTRACE_SECCOMP_GET_FILTER): without it a filtered thread is refused too.
Result<void> check_seccomp_allows_injection(pid_t pid, pid_t tid);

}  // namespace lg
