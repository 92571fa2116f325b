// Reading a thread's seccomp filters and following them for the syscalls injection needs.
//
// Facts used (man 2 seccomp, man 2 ptrace, kernel/seccomp.c):
//  1. A filter is a classic BPF program over struct seccomp_data {int nr; u32 arch; u64
//     instruction_pointer; u64 args[6]} (words at offsets 0, 4, 8/12, 16 + 8i / 20 + 8i).
//  2. Every filter of the thread runs; the action with the lowest value wins (KILL_PROCESS <
//     KILL_THREAD < TRAP < ERRNO < USER_NOTIF < TRACE < LOG < ALLOW), so each filter must
//     allow a syscall on its own.
//  3. PTRACE_SECCOMP_GET_FILTER (index 0 = the newest filter) returns the program of a
//     ptrace-stopped tracee; it needs CAP_SYS_ADMIN and CONFIG_CHECKPOINT_RESTORE.
//  4. New threads inherit their creator's filters: the agent's control thread, created by
//     the borrowed thread during dlopen, runs under the borrowed thread's filters.
#include "process/seccomp_check.h"

#include <linux/audit.h>
#include <linux/seccomp.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>

#include <algorithm>
#include <cstring>
#include <optional>

#include "common/proc_maps.h"

namespace lg {

namespace {

constexpr int kNeeded[] = {
    // The remote syscalls of a remote call (remote_call.cpp).
    SYS_mmap, SYS_mprotect, SYS_munmap, SYS_getpid,
    // dlopen: finding, reading and mapping the library.
    SYS_openat, SYS_open, SYS_read, SYS_pread64, SYS_fstat, SYS_newfstatat, SYS_statx, SYS_close, SYS_brk,
    SYS_futex, SYS_madvise, SYS_mremap,
    // The agent: its socket directory and socket, its control thread, loading patches.
    SYS_socket, SYS_bind, SYS_listen, SYS_accept, SYS_accept4, SYS_recvfrom, SYS_sendto, SYS_recvmsg,
    SYS_sendmsg, SYS_getsockopt, SYS_setsockopt, SYS_mkdir, SYS_mkdirat, SYS_chmod, SYS_fchmod, SYS_fchmodat,
    SYS_unlink, SYS_unlinkat, SYS_lstat, SYS_stat, SYS_write, SYS_lseek, SYS_poll, SYS_ppoll,
    SYS_clone, SYS_clone3, SYS_set_robust_list, SYS_rseq, SYS_rt_sigprocmask, SYS_rt_sigaction, SYS_sigaltstack,
    SYS_exit, SYS_nanosleep, SYS_clock_nanosleep, SYS_membarrier, SYS_gettid, SYS_getuid, SYS_geteuid,
    SYS_getgid, SYS_getegid, SYS_getrandom, SYS_sched_yield, SYS_prctl,
    // The agent's peer check, instance lock, stale-socket sweep and executor thread (server.cpp,
    // agent_entry.cpp).
    SYS_connect, SYS_getresuid, SYS_getresgid, SYS_setresuid, SYS_capget, SYS_capset, SYS_memfd_create,
    SYS_ftruncate, SYS_getdents64, SYS_rename, SYS_renameat, SYS_renameat2, SYS_pidfd_send_signal, SYS_pipe2,
    SYS_fcntl, SYS_readlink};

constexpr uint32_t kSeccompDataSize = 64;  // sizeof(struct seccomp_data)

using Value = std::optional<uint32_t>;  // a known value, or unknown (arguments, ip)

struct State {
  size_t pc = 0;
  Value a, x;
  Value mem[BPF_MEMWORDS];
};

// Applies an ALU op to A; false for an op the kernel does not accept (or a division by 0).
bool alu(uint16_t op, Value& a, Value operand) {
  if (op == BPF_NEG) {
    if (a) a = static_cast<uint32_t>(-static_cast<int64_t>(*a));
    return true;
  }
  if (!a || !operand) {
    a = op == BPF_AND && ((a && *a == 0) || (operand && *operand == 0)) ? Value(0u) : Value();
    return true;
  }
  const uint32_t l = *a, r = *operand;
  switch (op) {
    case BPF_ADD: a = l + r; return true;
    case BPF_SUB: a = l - r; return true;
    case BPF_MUL: a = l * r; return true;
    case BPF_DIV: if (r == 0) return false; a = l / r; return true;
    case BPF_MOD: if (r == 0) return false; a = l % r; return true;
    case BPF_OR: a = l | r; return true;
    case BPF_AND: a = l & r; return true;
    case BPF_XOR: a = l ^ r; return true;
    case BPF_LSH: a = r >= 32 ? 0u : l << r; return true;
    case BPF_RSH: a = r >= 32 ? 0u : l >> r; return true;
    default: return false;
  }
}

const char* action_name(uint32_t action) {
  switch (action) {
    case SECCOMP_RET_KILL_PROCESS: return "KILL_PROCESS";
    case SECCOMP_RET_KILL_THREAD: return "KILL_THREAD";
    case SECCOMP_RET_TRAP: return "TRAP (SIGSYS)";
    case SECCOMP_RET_ERRNO: return "ERRNO";
    case SECCOMP_RET_USER_NOTIF: return "USER_NOTIF";
    case SECCOMP_RET_TRACE: return "TRACE";
    case SECCOMP_RET_LOG: return "LOG";
    case SECCOMP_RET_ALLOW: return "ALLOW";
    default: return "an unknown action";
  }
}

bool allows(uint32_t action) { return action == SECCOMP_RET_ALLOW || action == SECCOMP_RET_LOG; }

std::string syscall_name(int nr) {
  switch (nr) {
#define LG_SYSCALL_NAME(n) \
  case SYS_##n:            \
    return #n;
    LG_SYSCALL_NAME(mmap) LG_SYSCALL_NAME(mprotect) LG_SYSCALL_NAME(munmap) LG_SYSCALL_NAME(getpid)
    LG_SYSCALL_NAME(openat) LG_SYSCALL_NAME(open) LG_SYSCALL_NAME(read) LG_SYSCALL_NAME(pread64)
    LG_SYSCALL_NAME(fstat) LG_SYSCALL_NAME(newfstatat) LG_SYSCALL_NAME(statx) LG_SYSCALL_NAME(close)
    LG_SYSCALL_NAME(brk) LG_SYSCALL_NAME(futex) LG_SYSCALL_NAME(madvise) LG_SYSCALL_NAME(mremap)
    LG_SYSCALL_NAME(socket) LG_SYSCALL_NAME(bind) LG_SYSCALL_NAME(listen) LG_SYSCALL_NAME(accept)
    LG_SYSCALL_NAME(accept4) LG_SYSCALL_NAME(recvfrom) LG_SYSCALL_NAME(sendto) LG_SYSCALL_NAME(recvmsg)
    LG_SYSCALL_NAME(sendmsg) LG_SYSCALL_NAME(getsockopt) LG_SYSCALL_NAME(setsockopt) LG_SYSCALL_NAME(mkdir)
    LG_SYSCALL_NAME(mkdirat) LG_SYSCALL_NAME(chmod) LG_SYSCALL_NAME(fchmod) LG_SYSCALL_NAME(fchmodat)
    LG_SYSCALL_NAME(unlink) LG_SYSCALL_NAME(unlinkat) LG_SYSCALL_NAME(lstat) LG_SYSCALL_NAME(stat)
    LG_SYSCALL_NAME(write) LG_SYSCALL_NAME(lseek) LG_SYSCALL_NAME(poll) LG_SYSCALL_NAME(ppoll)
    LG_SYSCALL_NAME(clone) LG_SYSCALL_NAME(clone3) LG_SYSCALL_NAME(set_robust_list) LG_SYSCALL_NAME(rseq)
    LG_SYSCALL_NAME(rt_sigprocmask) LG_SYSCALL_NAME(rt_sigaction) LG_SYSCALL_NAME(sigaltstack)
    LG_SYSCALL_NAME(exit) LG_SYSCALL_NAME(nanosleep) LG_SYSCALL_NAME(clock_nanosleep)
    LG_SYSCALL_NAME(membarrier) LG_SYSCALL_NAME(gettid) LG_SYSCALL_NAME(getuid) LG_SYSCALL_NAME(geteuid)
    LG_SYSCALL_NAME(getgid) LG_SYSCALL_NAME(getegid) LG_SYSCALL_NAME(getrandom) LG_SYSCALL_NAME(sched_yield)
    LG_SYSCALL_NAME(prctl)
#undef LG_SYSCALL_NAME
    default:
      return fmt::format("syscall {}", nr);
  }
}

long status_field(const std::string& text, const char* name) {
  auto v = proc_status_field(text, name);
  return v ? std::atol(std::string(*v).c_str()) : 0;
}

Error refusal(pid_t pid, pid_t tid, const std::string& why) {
  return Error(ErrorKind::unsupported,
               fmt::format("process {} (thread {}) runs under seccomp: {}; injecting the agent there could get the "
                           "process killed, so livegraft does not inject into it",
                           pid, tid, why),
               0,
               "start the program with the agent preloaded (LD_PRELOAD=/path/to/liblivegraft-agent.so), before it "
               "installs its seccomp filter");
}

}  // namespace

std::span<const int> syscalls_needed_for_injection() { return kNeeded; }

Result<std::vector<uint32_t>> seccomp_actions_for(std::span<const sock_filter> program, int nr) {
  if (program.empty() || program.size() > BPF_MAXINSNS)
    return make_error(ErrorKind::unsupported, "a seccomp program of {} instructions", program.size());
  std::vector<uint32_t> actions;
  std::vector<State> todo{State{}};
  size_t steps = 0;
  while (!todo.empty()) {
    State s = todo.back();
    todo.pop_back();
    for (;;) {
      if (++steps > 200000) return make_error(ErrorKind::unsupported, "a seccomp program with too many paths to follow");
      if (s.pc >= program.size()) return make_error(ErrorKind::unsupported, "a seccomp program that runs off its end");
      const sock_filter in = program[s.pc++];
      const uint16_t cls = BPF_CLASS(in.code);
      if (cls == BPF_RET) {
        Value v = BPF_RVAL(in.code) == BPF_K ? Value(in.k) : s.a;
        if (!v) return make_error(ErrorKind::unsupported, "a seccomp program that returns a computed action");
        const uint32_t action = *v & SECCOMP_RET_ACTION_FULL;
        if (std::find(actions.begin(), actions.end(), action) == actions.end()) actions.push_back(action);
        break;
      }
      if (cls == BPF_LD || cls == BPF_LDX) {
        Value v;
        switch (BPF_MODE(in.code)) {
          case BPF_IMM: v = in.k; break;
          case BPF_LEN: v = kSeccompDataSize; break;
          case BPF_MEM:
            if (in.k >= BPF_MEMWORDS) return make_error(ErrorKind::unsupported, "a bad seccomp memory load");
            v = s.mem[in.k];
            break;
          case BPF_ABS:
            if (cls != BPF_LD || BPF_SIZE(in.code) != BPF_W || in.k % 4 != 0 || in.k >= kSeccompDataSize)
              return make_error(ErrorKind::unsupported, "a seccomp load at offset {}", in.k);
            if (in.k == 0) v = static_cast<uint32_t>(nr);
            else if (in.k == 4) v = AUDIT_ARCH_X86_64;
            break;  // instruction pointer, arguments: unknown
          default:
            return make_error(ErrorKind::unsupported, "a seccomp load mode {:#x}", BPF_MODE(in.code));
        }
        (cls == BPF_LD ? s.a : s.x) = v;
        continue;
      }
      if (cls == BPF_ST || cls == BPF_STX) {
        if (in.k >= BPF_MEMWORDS) return make_error(ErrorKind::unsupported, "a bad seccomp memory store");
        s.mem[in.k] = cls == BPF_ST ? s.a : s.x;
        continue;
      }
      if (cls == BPF_ALU) {
        if (!alu(BPF_OP(in.code), s.a, BPF_SRC(in.code) == BPF_K ? Value(in.k) : s.x))
          return make_error(ErrorKind::unsupported, "a seccomp ALU op {:#x}", in.code);
        continue;
      }
      if (cls == BPF_MISC) {
        if (BPF_MISCOP(in.code) == BPF_TAX) s.x = s.a;
        else s.a = s.x;
        continue;
      }
      if (cls == BPF_JMP) {
        if (BPF_OP(in.code) == BPF_JA) {
          s.pc += in.k;
          continue;
        }
        const Value r = BPF_SRC(in.code) == BPF_K ? Value(in.k) : s.x;
        std::optional<bool> taken;
        if (s.a && r) {
          switch (BPF_OP(in.code)) {
            case BPF_JEQ: taken = *s.a == *r; break;
            case BPF_JGT: taken = *s.a > *r; break;
            case BPF_JGE: taken = *s.a >= *r; break;
            case BPF_JSET: taken = (*s.a & *r) != 0; break;
            default: return make_error(ErrorKind::unsupported, "a seccomp jump {:#x}", in.code);
          }
        }
        const size_t jt = s.pc + in.jt, jf = s.pc + in.jf;
        if (!taken) {  // depends on an unknown value: both ways
          State other = s;
          other.pc = jf;
          todo.push_back(other);
          s.pc = jt;
        } else {
          s.pc = *taken ? jt : jf;
        }
        continue;
      }
      return make_error(ErrorKind::unsupported, "a seccomp instruction {:#x}", in.code);
    }
  }
  return actions;
}

Result<void> check_seccomp_allows_injection(pid_t pid, pid_t tid) {
  auto text = read_text_file(fmt::format("/proc/{}/task/{}/status", pid, tid));
  if (!text) return ok_result();  // gone: the caller finds out
  const long mode = status_field(*text, "Seccomp");
  if (mode == 0) return ok_result();
  if (mode == 1) return refusal(pid, tid, "strict mode (only read, write, exit and sigreturn are allowed)");
  const long count = status_field(*text, "Seccomp_filters");
  for (long index = 0;; ++index) {
    long n = ::ptrace(PTRACE_SECCOMP_GET_FILTER, tid, reinterpret_cast<void*>(index), nullptr);
    if (n < 0) {
      if (errno == ENOENT && index > 0) break;  // past the oldest filter
      return refusal(pid, tid, fmt::format("{} filter(s) that cannot be read ({}: PTRACE_SECCOMP_GET_FILTER needs "
                                           "CAP_SYS_ADMIN)",
                                           count, std::strerror(errno)));
    }
    std::vector<sock_filter> program(static_cast<size_t>(n));
    if (::ptrace(PTRACE_SECCOMP_GET_FILTER, tid, reinterpret_cast<void*>(index), program.data()) != n)
      return refusal(pid, tid, fmt::format("filter {} cannot be read: {}", index, std::strerror(errno)));
    for (int nr : kNeeded) {
      auto actions = seccomp_actions_for(program, nr);
      if (!actions) return refusal(pid, tid, fmt::format("filter {} contains {}", index, actions.error().message));
      for (uint32_t action : *actions)
        if (!allows(action))
          return refusal(pid, tid, fmt::format("filter {} (of {}) may answer {} with {}", index, count,
                                               syscall_name(nr), action_name(action)));
    }
  }
  return ok_result();
}

}  // namespace lg
