/* Target for the injection hazard tests: one thread serves requests on stdin, another spins
 * in a loop that keeps the same count in a general register and in a vector register and
 * checks they agree (a register clobbered by a remote call shows up as a mismatch).
 *   "n"  prints the number of "n" requests so far (state that must survive)
 *   "v"  prints "v MISMATCHES ADVANCED" (ADVANCED 1: the spinner made progress since the last v)
 * With argv[1] == "busy-main" the main thread spins and a second thread serves stdin (the
 * controller borrows the lowest tid first: then it borrows a thread in user code, not in a
 * syscall); with "sleepy-main" the main thread naps in usleep() in a loop (a syscall restarted
 * through restart_syscall) and ADVANCED also requires it to have woken up since the last v. */
#define _GNU_SOURCE
#include <pthread.h>
#include <unistd.h>

#include "target_common.h"

static volatile unsigned long g_iterations, g_mismatches, g_naps;
static int g_napper;
static unsigned long g_requests;

__attribute__((noinline)) static void spin(void) {
  long i = 0;
  double d = 0.0;
  for (;;) {
    ++i;
    d += 1.0;
    if ((double)i != d) {
      g_mismatches++;
      d = (double)i;
    }
    if ((i & 0xfff) == 0) g_iterations = (unsigned long)i;
  }
}

static void* spinner(void* arg) {
  (void)arg;
  spin();
  return NULL;
}

static void serve(void) {
  char line[64];
  unsigned long last = 0, last_naps = 0;
  target_ready();
  while (fgets(line, sizeof line, stdin)) {
    if (line[0] == 'n') {
      printf("%lu\n", ++g_requests);
    } else if (line[0] == 'v') {
      unsigned long now = g_iterations, naps = g_naps;
      printf("v %lu %d\n", g_mismatches, now != last && (!g_napper || naps != last_naps));
      last = now;
      last_naps = naps;
    } else if (line[0] == 'q') {
      break;
    } else {
      printf("?\n");
    }
    fflush(stdout);
  }
}

static void* server(void* arg) {
  (void)arg;
  serve();
  _exit(0);
}

int main(int argc, char** argv) {
  pthread_t t;
  if (argc > 1 && strcmp(argv[1], "busy-main") == 0) {
    if (pthread_create(&t, NULL, server, NULL) != 0) return 1;
    spin();
  }
  if (pthread_create(&t, NULL, spinner, NULL) != 0) return 1;
  if (argc > 1 && strcmp(argv[1], "sleepy-main") == 0) {
    g_napper = 1;
    if (pthread_create(&t, NULL, server, NULL) != 0) return 1;
    for (;;) {
      usleep(2000);
      g_naps++;
    }
  }
  serve();
  return 0;
}
