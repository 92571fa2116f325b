// Target for lg_process tests: creates and joins short-lived threads in a loop, forever.
// Prints "round N" every 20 rounds.
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

static volatile long g_sink;

static void* short_lived(void* arg) {
  for (long i = 0; i < 2000; ++i) g_sink += (long)arg;
  return NULL;
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  for (long round = 0;; ++round) {
    pthread_t t[4];
    for (long i = 0; i < 4; ++i) pthread_create(&t[i], NULL, short_lived, (void*)i);
    for (int i = 0; i < 4; ++i) pthread_join(t[i], NULL);
    if (round % 20 == 0) printf("round %ld\n", round);
  }
}
