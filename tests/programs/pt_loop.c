/* An event loop whose handler is almost always running: handle() (patched by
 * tests/patches/pt_loop_fix.c) spins for 20 ms, the loop calls it again at once. A controller
 * stopping the thread at a random moment finds handle() on its stack nearly every time.
 * argv[1] == "1": the loop calls livegraft_safepoint() between two requests.
 *   "v" prints the last result (1 old, 2 new); "q" quits. */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include <livegraft/safepoint.h>

#include "target_common.h"

static int use_safepoint;
static atomic_int last;

static long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

__attribute__((noipa)) int handle(void) {
  long long end = now_ns() + 20000000LL;
  while (now_ns() < end) {
  }
  return 1;
}

static void* loop(void* arg) {
  (void)arg;
  for (;;) {
    atomic_store(&last, handle());
    if (use_safepoint) livegraft_safepoint_if_loaded();
  }
  return NULL;
}

int main(int argc, char** argv) {
  use_safepoint = argc > 1 && argv[1][0] == '1';
  pthread_t t;
  pthread_create(&t, NULL, loop, NULL);
  char line[64];
  target_ready();
  while (fgets(line, sizeof line, stdin)) {
    if (line[0] == 'v') printf("%d\n", atomic_load(&last));
    else if (line[0] == 'q') break;
    fflush(stdout);
  }
  return 0;
}
