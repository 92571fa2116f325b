// Target program for tests/unit/unwind_stack_test.cpp.
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
volatile int go;
__attribute__((noinline)) void* worker_fn(void* arg) {
  pthread_mutex_lock(&mu);
  while (!go) pthread_cond_wait(&cv, &mu);
  pthread_mutex_unlock(&mu);
  return arg;
}
int main(int argc, char** argv) {
  int n = argc > 1 ? atoi(argv[1]) : 4;
  pthread_t* t = calloc(n, sizeof *t);
  for (int i = 0; i < n; i++) pthread_create(&t[i], 0, worker_fn, 0);
  write(1, "ready\n", 6);
  for (int i = 0; i < n; i++) pthread_join(t[i], 0);
  return 0;
}
