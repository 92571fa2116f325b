/* Target for the per-thread model: outer() calls inner(), and tests/patches/pt_pair_fix.c
 * changes both (old outer+inner = 110, new = 220; a mix would be 120 or 210).
 *   "b"  start a thread that blocks INSIDE outer() (reading a pipe) until "r", then calls
 *        inner() from there and prints "done V" (V = outer's result);
 *   "r"  release one blocked thread;
 *   "c"  print outer(0);
 *   "i"  start 4 idle threads (blocked in read, outside the patched functions);
 *   "q"  quit. */
#include <errno.h>
#include <pthread.h>
#include <unistd.h>

#include "target_common.h"

static int gate[2];
static int never[2];

__attribute__((noipa)) int inner(void) { return 10; }

__attribute__((noipa)) int outer(int block) {
  if (block) {
    char c;
    while (read(gate[0], &c, 1) < 0 && errno == EINTR) {
    }
  }
  return inner() + 100;
}

static void* blocked(void* arg) {
  (void)arg;
  int r = outer(1);
  printf("done %d\n", r);
  fflush(stdout);
  return NULL;
}

static void* idle(void* arg) {
  (void)arg;
  char c;
  while (read(never[0], &c, 1) < 0 && errno == EINTR) {
  }
  return NULL;
}

int main(void) {
  if (pipe(gate) != 0 || pipe(never) != 0) return 1;
  char line[64];
  target_ready();
  while (fgets(line, sizeof line, stdin)) {
    pthread_t t;
    if (line[0] == 'b') {
      pthread_create(&t, NULL, blocked, NULL);
      pthread_detach(t);
      printf("started\n");
    } else if (line[0] == 'r') {
      if (write(gate[1], "x", 1) != 1) return 2;
      continue;  /* the released thread answers */
    } else if (line[0] == 'c') {
      printf("%d\n", outer(0));
    } else if (line[0] == 'i') {
      for (int i = 0; i < 4; ++i) {
        pthread_create(&t, NULL, idle, NULL);
        pthread_detach(t);
      }
      printf("idle\n");
    } else if (line[0] == 'q') {
      break;
    }
    fflush(stdout);
  }
  return 0;
}
