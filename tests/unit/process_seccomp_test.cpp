// seccomp_actions_for: following classic-BPF seccomp programs with unknown arguments.
#include <gtest/gtest.h>
#include <linux/audit.h>
#include <linux/seccomp.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include <algorithm>
#include <cstddef>

#include "process/seccomp_check.h"

namespace lg {
namespace {

constexpr uint32_t kNr = offsetof(struct seccomp_data, nr);
constexpr uint32_t kArch = offsetof(struct seccomp_data, arch);
constexpr uint32_t kArg2 = offsetof(struct seccomp_data, args) + 2 * 8;  // low word of args[2]

std::vector<uint32_t> actions(const std::vector<sock_filter>& prog, int nr) {
  auto r = seccomp_actions_for(prog, nr);
  EXPECT_TRUE(r.ok()) << r.error().describe();
  if (!r) return {};
  std::sort(r->begin(), r->end());
  return *r;
}

const std::vector<sock_filter> kKillSocket = {
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, kArch),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, kNr),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_socket, 0, 1),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
};

TEST(ProcessSeccomp, KillOnOneSyscallOnlyAffectsThatSyscall) {
  EXPECT_EQ(actions(kKillSocket, SYS_socket), std::vector<uint32_t>{SECCOMP_RET_KILL_PROCESS});
  EXPECT_EQ(actions(kKillSocket, SYS_mmap), std::vector<uint32_t>{SECCOMP_RET_ALLOW});
}

TEST(ProcessSeccomp, ArgumentDependentRulesCountBothWays) {
  // mprotect with PROT_EXEC in args[2] fails with EPERM; everything else is allowed.
  const std::vector<sock_filter> prog = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, kNr),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_mprotect, 0, 3),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, kArg2),
      BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, PROT_EXEC, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  EXPECT_EQ(actions(prog, SYS_mprotect), (std::vector<uint32_t>{SECCOMP_RET_ERRNO, SECCOMP_RET_ALLOW}));
  EXPECT_EQ(actions(prog, SYS_read), std::vector<uint32_t>{SECCOMP_RET_ALLOW});
}

TEST(ProcessSeccomp, ScratchMemoryAluAndAlwaysJumps) {
  // M[0] = nr + 1; A = M[0]; jump over a kill when A == socket + 1.
  const std::vector<sock_filter> prog = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, kNr),
      BPF_STMT(BPF_ALU | BPF_ADD | BPF_K, 1),
      BPF_STMT(BPF_ST, 0),
      BPF_STMT(BPF_LD | BPF_IMM, 0),
      BPF_STMT(BPF_LD | BPF_MEM, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_socket + 1, 1, 0),
      BPF_STMT(BPF_JMP | BPF_JA, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  EXPECT_EQ(actions(prog, SYS_socket), std::vector<uint32_t>{SECCOMP_RET_TRAP});
  EXPECT_EQ(actions(prog, SYS_bind), std::vector<uint32_t>{SECCOMP_RET_ALLOW});
}

TEST(ProcessSeccomp, ProgramsThatCannotBeFollowedAreErrors) {
  const std::vector<sock_filter> computed = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, kArg2),
      BPF_STMT(BPF_RET | BPF_A, 0),
  };
  EXPECT_FALSE(seccomp_actions_for(computed, SYS_read).ok());
  const std::vector<sock_filter> off_the_end = {BPF_STMT(BPF_LD | BPF_W | BPF_ABS, kNr)};
  EXPECT_FALSE(seccomp_actions_for(off_the_end, SYS_read).ok());
  EXPECT_FALSE(seccomp_actions_for({}, SYS_read).ok());
}

TEST(ProcessSeccomp, TheNeededListHasTheRemoteSyscallsAndTheAgentsSocket) {
  auto needed = syscalls_needed_for_injection();
  for (int nr : {SYS_mmap, SYS_mprotect, SYS_munmap, SYS_getpid, SYS_openat, SYS_socket, SYS_clone3})
    EXPECT_NE(std::find(needed.begin(), needed.end(), nr), needed.end()) << nr;
}

}  // namespace
}  // namespace lg
