/* Target for the per-thread model: outer() calls inner(), and tests/patches/pt_pair_fix.c
 * changes both (old outer+inner = 110, new = 220; a mix would be 120 or 210).
 *   "b"  start a thread that blocks INSIDE outer() (reading a pipe) until "r", then calls
 *        inner() from there and prints "done V" (V = outer's result);
 *   "r"  release one blocked thread;
 *   "c"  print outer(0);
 *   "i"  start 4 idle threads (blocked in read, outside the patched functions);
 *   "q"  quit. */
#include "pt_pair.h"

static enum pt_command start_idle_threads(const char* line) {
  if (line[0] != 'i') return PT_OTHER;
  for (int i = 0; i < 4; ++i) {
    pthread_t t;
    pthread_create(&t, NULL, idle, NULL);
    pthread_detach(t);
  }
  printf("idle\n");
  return PT_ANSWERED;
}

int main(void) {
  if (pipe(gate) != 0 || pipe(never) != 0) return 1;
  pt_command_loop(start_idle_threads);
  return 0;
}
