/* A thread blocked in a syscall *inside the first bytes* of a patched function: gate_wait()
 * begins with `xchg %edi,%eax; syscall`, so a thread parked in it has its pc at gate_wait+3,
 * inside the bytes the entry jump overwrites (docs/consistency.md, "Writing the entry jumps").
 *   "p"  starts a thread parked in gate_wait(SYS_pause) ("started")
 *   "r"  wakes it with SIGUSR1 and joins it ("released")
 *   "g"  calls gate_wait(SYS_getpid) here: "old" (the syscall ran) or "new" (gate_wait_fixed)
 *   "q"  quits */
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "target_common.h"

long gate_wait(long nr);  /* syscall [nr] with no arguments */
__asm__(
    "  .text\n"
    "  .globl gate_wait\n"
    "  .type gate_wait, @function\n"
    "gate_wait:\n"
    "  .cfi_startproc\n"
    "  xchg %edi, %eax\n"    /* 1 byte */
    "  syscall\n"            /* 2 bytes: a parked thread's pc is gate_wait+3 */
    "  nopl 0(%rax)\n"       /* 4 bytes */
    "  ret\n"
    "  .cfi_endproc\n"
    "  .size gate_wait, .-gate_wait\n");

static void on_usr1(int sig) { (void)sig; }

static void* parked(void* arg) {
  (void)arg;
  gate_wait(SYS_pause);
  return NULL;
}

int main(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1;
  sigaction(SIGUSR1, &sa, NULL);
  pthread_t t;
  int running = 0;
  char line[64];
  target_ready();
  while (fgets(line, sizeof line, stdin)) {
    if (line[0] == 'p' && !running) {
      running = pthread_create(&t, NULL, parked, NULL) == 0;
      printf("%s\n", running ? "started" : "failed");
    } else if (line[0] == 'r' && running) {
      pthread_kill(t, SIGUSR1);
      pthread_join(t, NULL);
      running = 0;
      printf("released\n");
    } else if (line[0] == 'g') {
      printf("%s\n", gate_wait(SYS_getpid) == getpid() ? "old" : "new");
    } else if (line[0] == 'q') {
      break;
    }
    fflush(stdout);
  }
  return 0;
}
