/* Target for the per-thread model: outer() calls inner(), and tests/patches/pt_pair_fix.c
 * changes both (old outer+inner = 110, new = 220; a mix would be 120 or 210).
 *   "b"  start a thread that blocks INSIDE outer() (reading a pipe) until "r", then calls
 *        inner() from there and prints "done V" (V = outer's result);
 *   "r"  release one blocked thread;
 *   "c"  print outer(0);
 *   "i"  start 4 idle threads (blocked in read, outside the patched functions);
 *   "q"  quit. */
#include "pt_pair.h"

int main(void) {
  if (pipe(gate) != 0 || pipe(never) != 0) return 1;
  char line[64];
  target_ready();
  while (fgets(line, sizeof line, stdin)) {
    enum pt_command done = pt_pair_command(line[0]);
    if (done == PT_SILENT) continue;
    if (done == PT_OTHER) {
      if (line[0] == 'i') {
        for (int i = 0; i < 4; ++i) {
          pthread_t t;
          pthread_create(&t, NULL, idle, NULL);
          pthread_detach(t);
        }
        printf("idle\n");
      } else if (line[0] == 'q') {
        break;
      }
    }
    fflush(stdout);
  }
  return 0;
}
