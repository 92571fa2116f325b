/* A server whose worker threads block (nearly) every signal, as HAProxy's setup_extra_threads()
 * does (src/thread.c: sigfillset, then SIGPROF/SIGBUS/SIGFPE/SIGILL/SIGSEGV taken out, before
 * pthread_create): SIGTRAP stays blocked in every worker. Three workers call answer() (patched
 * by tests/patches/stranger_sigblock_fix.c: 1 -> 2) in a loop; the main thread restores its own
 * mask and serves the test.
 * A thread that executes an int3 while SIGTRAP is blocked is not given to a handler: the kernel
 * resets SIGTRAP to its default action (core dump) for the whole process (force_sig_info).
 *   "c" waits for a fresh result of a worker and prints it; "q" quits.
 *   "t" executes an int3 in the main thread and prints "trapped" (only under a tracer that takes
 *   the trap: e2e.StrangerSigtrap.ThreadWithATrapQueuedBehindItsMask...). */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>

#include "target_common.h"

static atomic_int last;
static atomic_ulong calls;

static volatile int bias;  /* 0; makes answer() long enough for the entry jump */

__attribute__((noipa)) int answer(int x) { return x + bias; }

static void* worker(void* arg) {
  (void)arg;
  for (;;) {
    atomic_store(&last, answer(1));
    atomic_fetch_add(&calls, 1);
  }
  return NULL;
}

int main(void) {
  sigset_t blocked, old;
  sigfillset(&blocked);
  sigdelset(&blocked, SIGPROF);
  sigdelset(&blocked, SIGBUS);
  sigdelset(&blocked, SIGFPE);
  sigdelset(&blocked, SIGILL);
  sigdelset(&blocked, SIGSEGV);
  pthread_sigmask(SIG_SETMASK, &blocked, &old);
  pthread_t t[3];
  for (int i = 0; i < 3; i++) pthread_create(&t[i], NULL, worker, NULL);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  char line[64];
  target_ready();
  while (fgets(line, sizeof line, stdin)) {
    if (line[0] == 'c') {
      unsigned long seen = atomic_load(&calls);
      while (atomic_load(&calls) < seen + 2) {
      }
      printf("%d\n", atomic_load(&last));
    } else if (line[0] == 't') {
      __asm__ volatile("int3");
      printf("trapped\n");
    } else if (line[0] == 'q') {
      break;
    }
    fflush(stdout);
  }
  return 0;
}
