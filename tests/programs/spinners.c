/* Multi-threaded target: argv[1] threads call compute() in a tight loop and check that every
 * result is either the old or the new implementation's; a wrong result prints BAD and exits 3.
 * "n" prints how many calls were made; "q" quits. */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/resource.h>

#include "target_common.h"

static atomic_long total_calls;

__attribute__((noinline)) int compute(int x) { return x * 10 + 1; }   /* new: x * 10 + 2 */

static void* spin(void* arg) {
  (void)arg;
  /* Spinners run at nice 19 (Linux nice values are per thread), so that on a 2-core machine the
   * controller and the agent are not starved 33:1 by 64 busy threads. They still run all the
   * time and are preempted anywhere, inside compute() too. */
  setpriority(PRIO_PROCESS, 0, 19);
  for (int i = 0;; i = (i + 1) & 1023) {
    int r = compute(i);
    if (r != i * 10 + 1 && r != i * 10 + 2) {
      printf("BAD %d -> %d\n", i, r);
      fflush(stdout);
      exit(3);
    }
    atomic_fetch_add_explicit(&total_calls, 1, memory_order_relaxed);
  }
  return NULL;
}

int main(int argc, char** argv) {
  int n = argc > 1 ? atoi(argv[1]) : 4;
  for (int i = 0; i < n; ++i) {
    pthread_t t;
    if (pthread_create(&t, NULL, spin, NULL) != 0) return 2;
  }
  char line[64];
  target_ready();
  while (fgets(line, sizeof line, stdin)) {
    if (line[0] == 'n') printf("%ld\n", atomic_load(&total_calls));
    else if (line[0] == 'c') printf("%d\n", compute(1));
    else if (line[0] == 'q') break;
    fflush(stdout);
  }
  return 0;
}
