/* A service with a maintenance thread: maintainer() is the thread's start function and loops
 * for the whole life of the thread (as memcached's lru_maintainer_thread does). fix.diff
 * changes its loop: the build warns that no apply can switch that thread. */
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

static volatile int running = 1;
static unsigned long passes;

static void *maintainer(void *arg) {
  (void)arg;
  while (running) {
    passes++;
    usleep(100000);
  }
  return NULL;
}

static __attribute__((noinline)) int start_maintainer(pthread_t *t) { return pthread_create(t, NULL, maintainer, NULL); }

int main(void) {
  pthread_t t;
  if (start_maintainer(&t) != 0) return 1;
  for (;;) {
    printf("%lu\n", passes);
    fflush(stdout);
    sleep(1);
  }
}
