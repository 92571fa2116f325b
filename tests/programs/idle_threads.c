/* argv[1] threads blocked in a condition wait; "c" prints compute(1); "q" quits. Used for the
 * 200-thread test and the stop-time benchmark. */
#include <pthread.h>

#include "target_common.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

__attribute__((noinline)) int compute(int x) { return x * 10 + 1; }

static void* idle(void* arg) {
  (void)arg;
  pthread_mutex_lock(&mu);
  for (;;) pthread_cond_wait(&cv, &mu);
  return NULL;
}

int main(int argc, char** argv) {
  int n = argc > 1 ? atoi(argv[1]) : 10;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 64 * 1024);
  for (int i = 0; i < n; ++i) {
    pthread_t t;
    if (pthread_create(&t, &attr, idle, NULL) != 0) return 2;
  }
  char line[64];
  target_ready();
  while (fgets(line, sizeof line, stdin)) {
    if (line[0] == 'c') printf("%d\n", compute(1));
    else if (line[0] == 'q') break;
    fflush(stdout);
  }
  return 0;
}
