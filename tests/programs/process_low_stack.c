/* Target for lg_process tests: a thread with almost no stack left. The thread (64 KiB stack)
 * recurses until less than ~1.5 KiB of its stack remains, prints "low TID LEFT", and waits in
 * read() on a pipe nobody writes; the main thread prints "tick N" every 5 ms. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static uintptr_t g_stack_lo;
static int g_pipe[2];

__attribute__((noinline)) static void descend(int depth) {
  volatile char pad[256];
  pad[0] = (char)depth;
  uintptr_t here = (uintptr_t)&pad[0];
  if (here > g_stack_lo + 1536) {
    descend(depth + 1);
  } else {
    /* No printf down here: it needs more stack than is left. */
    char buf[48];
    int n = sizeof buf;
    buf[--n] = '\n';
    unsigned long left = (unsigned long)(here - g_stack_lo), tid = (unsigned long)syscall(SYS_gettid);
    do buf[--n] = (char)('0' + left % 10); while ((left /= 10) != 0);
    buf[--n] = ' ';
    do buf[--n] = (char)('0' + tid % 10); while ((tid /= 10) != 0);
    buf[--n] = ' ';
    buf[--n] = 'w';
    buf[--n] = 'o';
    buf[--n] = 'l';
    (void)write(1, buf + n, sizeof buf - n);
    char c;
    for (;;) (void)read(g_pipe[0], &c, 1);
  }
  pad[1] = 0;
}

static void* low(void* arg) {
  (void)arg;
  /* Bind the PLT entries used at the bottom now: lazy binding saves the vector state on the
   * stack (several KiB with AVX-512). */
  char c;
  (void)syscall(SYS_gettid);
  (void)write(1, "", 0);
  (void)read(g_pipe[0], &c, 0);
  descend(0);
  return NULL;
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (pipe(g_pipe) != 0) return 1;
  /* The thread's stack: 64 KiB above a guard page, so its lowest usable byte is known. */
  const size_t size = 64 * 1024;
  char* block = mmap(NULL, size + 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (block == MAP_FAILED || mprotect(block, 4096, PROT_NONE) != 0) return 1;
  g_stack_lo = (uintptr_t)block + 4096;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstack(&attr, block + 4096, size);
  pthread_t t;
  if (pthread_create(&t, &attr, low, NULL) != 0) return 1;
  for (long tick = 0;; ++tick) {
    printf("tick %ld\n", tick);
    usleep(5000);
  }
}
