/* Target for lg_process tests: a thread with almost no stack left. The thread (64 KiB stack)
 * recurses until less than ~1.5 KiB of its stack remains, prints "low TID LEFT", and waits in
 * read() on a pipe nobody writes; the main thread prints "tick N" every 5 ms. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

static uintptr_t g_stack_lo;
static int g_pipe[2];

__attribute__((noinline)) static void descend(int depth) {
  volatile char pad[256];
  pad[0] = (char)depth;
  uintptr_t here = (uintptr_t)&pad[0];
  if (here - g_stack_lo > 1536) {
    descend(depth + 1);
  } else {
    printf("low %ld %lu\n", (long)syscall(SYS_gettid), (unsigned long)(here - g_stack_lo));
    fflush(stdout);
    char c;
    for (;;) (void)read(g_pipe[0], &c, 1);
  }
  pad[1] = 0;
}

static void* low(void* arg) {
  (void)arg;
  pthread_attr_t attr;
  void* addr;
  size_t size;
  pthread_getattr_np(pthread_self(), &attr);
  pthread_attr_getstack(&attr, &addr, &size);
  g_stack_lo = (uintptr_t)addr;
  descend(0);
  return NULL;
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (pipe(g_pipe) != 0) return 1;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 64 * 1024);
  pthread_t t;
  if (pthread_create(&t, &attr, low, NULL) != 0) return 1;
  for (long tick = 0;; ++tick) {
    printf("tick %ld\n", tick);
    usleep(5000);
  }
}
