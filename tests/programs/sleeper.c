/* "b" starts a thread that sleeps for argv[1] ms INSIDE compute() (a thread blocked in the
 * function being patched) and prints "done R" when it returns; "c" prints compute(0) (no
 * sleep); "q" quits. */
#include <pthread.h>
#include <time.h>

#include "target_common.h"

static int sleep_ms = 2000;

__attribute__((noinline)) int compute(int nap_ms) {
  if (nap_ms > 0) {
    struct timespec ts = {nap_ms / 1000, (long)(nap_ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
  }
  return 1;
}

static void* napper(void* arg) {
  (void)arg;
  int r = compute(sleep_ms);
  printf("done %d\n", r);
  fflush(stdout);
  return NULL;
}

int main(int argc, char** argv) {
  if (argc > 1) sleep_ms = atoi(argv[1]);
  char line[64];
  target_ready();
  while (fgets(line, sizeof line, stdin)) {
    if (line[0] == 'b') {
      pthread_t t;
      pthread_create(&t, NULL, napper, NULL);
      pthread_detach(t);
      printf("started\n");
    } else if (line[0] == 'c') {
      printf("%d\n", compute(0));
    } else if (line[0] == 'q') {
      break;
    }
    fflush(stdout);
  }
  return 0;
}
