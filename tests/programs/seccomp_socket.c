/* Target under a seccomp filter that kills the process on socket() (the agent's control socket
 * would trip it). "n" prints the number of "n" requests so far. */
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include "target_common.h"

int main(void) {
  struct sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_socket, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = {sizeof filter / sizeof filter[0], filter};
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
