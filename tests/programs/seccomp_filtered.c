/* Target under a seccomp filter that kills the process on one syscall: socket() (argv[1]
 * "socket", the default: the agent's control socket would trip it) or mount() ("mount": nothing
 * injection does), or anything but a list ("allowlist", below). "n" prints the number of "n" requests so far. */
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include "target_common.h"

/* "allowlist": only the syscalls livegraft says injection needs (src/process/seccomp_check.cpp)
 * plus what this program itself makes; anything else kills the process. */
static const unsigned kAllowed[] = {
    SYS_mmap, SYS_mprotect, SYS_munmap, SYS_getpid, SYS_openat, SYS_open, SYS_read, SYS_pread64, SYS_fstat,
    SYS_newfstatat, SYS_statx, SYS_close, SYS_brk, SYS_futex, SYS_madvise, SYS_mremap, SYS_socket, SYS_bind,
    SYS_listen, SYS_accept, SYS_accept4, SYS_recvfrom, SYS_sendto, SYS_recvmsg, SYS_sendmsg, SYS_getsockopt,
    SYS_setsockopt, SYS_mkdir, SYS_mkdirat, SYS_chmod, SYS_fchmod, SYS_fchmodat, SYS_unlink, SYS_unlinkat,
    SYS_lstat, SYS_stat, SYS_write, SYS_lseek, SYS_poll, SYS_ppoll, SYS_clone, SYS_clone3, SYS_set_robust_list,
    SYS_rseq, SYS_rt_sigprocmask, SYS_rt_sigaction, SYS_sigaltstack, SYS_exit, SYS_nanosleep,
    SYS_clock_nanosleep, SYS_membarrier, SYS_gettid, SYS_getuid, SYS_geteuid, SYS_getgid, SYS_getegid,
    SYS_getrandom, SYS_sched_yield, SYS_prctl, SYS_connect, SYS_getresuid, SYS_getresgid, SYS_setresuid,
    SYS_capget, SYS_capset, SYS_memfd_create, SYS_ftruncate, SYS_getdents64, SYS_rename, SYS_renameat,
    SYS_renameat2, SYS_pidfd_send_signal, SYS_pipe2, SYS_fcntl, SYS_readlink,
    /* this program */
    SYS_exit_group, SYS_rt_sigreturn, SYS_restart_syscall};

int main(int argc, char** argv) {
  struct sock_filter filter[3 + 2 * (sizeof kAllowed / sizeof kAllowed[0])];
  unsigned n = 0;
  filter[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
  if (argc > 1 && strcmp(argv[1], "allowlist") == 0) {
    for (unsigned i = 0; i < sizeof kAllowed / sizeof kAllowed[0]; ++i) {
      filter[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kAllowed[i], 0, 1);
      filter[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    }
    filter[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
  } else {
    const unsigned nr = argc > 1 && strcmp(argv[1], "mount") == 0 ? SYS_mount : SYS_socket;
    filter[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, 1);
    filter[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
    filter[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
  }
  struct sock_fprog prog = {(unsigned short)n, filter};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
    printf("seccomp failed\n");
    return 1;
  }
  char line[64];
  unsigned long requests = 0;
  target_ready();
  while (fgets(line, sizeof line, stdin)) {
    if (line[0] == 'n') printf("%lu\n", ++requests);
    else if (line[0] == 'q') break;
    else printf("?\n");
    fflush(stdout);
  }
  return 0;
}
