/* Single-threaded target: "c N" prints compute(N), "d N" prints depth(N) (recursive), "m N" sets
 * the static scale, "s" prints the static call counter, "q" quits. */
#include "target_common.h"

static int calls;                       /* static state a patch must keep using */
static int scale = 10;                  /* "m N" changes it, so it stays a real variable */

__attribute__((noipa)) static int bump(int by) {   /* a static function a patch calls (noipa: no .constprop clone) */
  calls += by;
  return calls;
}

__attribute__((noinline)) int compute(int x) {
  bump(1);
  return x * scale + 1;
}

/* Recursion through a patched function: depth(n) calls itself n times. */
__attribute__((noinline)) int depth(int n) {
  if (n <= 0) return 0;
  int r = depth(n - 1);
  __asm__ volatile("" ::: "memory");
  return r + 1;
}

int main(void) {
  char line[256];
  target_ready();
  while (fgets(line, sizeof line, stdin)) {
    int n = 0;
    if (sscanf(line, "c %d", &n) == 1) printf("%d\n", compute(n));
    else if (sscanf(line, "d %d", &n) == 1) printf("%d\n", depth(n));
    else if (sscanf(line, "m %d", &n) == 1) printf("%d\n", scale = n);
    else if (line[0] == 's') printf("%d\n", calls);
    else if (line[0] == 'q') break;
    else printf("?\n");
    fflush(stdout);
  }
  return 0;
}
