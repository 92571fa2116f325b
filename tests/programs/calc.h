/* compute() and depth() with their static state, and the commands that use them: calc.c's,
 * shared with calc_fork.c so that tests/patches/calc_fix.c (and the other calc_* patches) apply
 * to both. */
#ifndef CALC_H
#define CALC_H
#include "target_common.h"

static int calls;      /* static state a patch must keep using */
static int scale = 10; /* "m N" changes it, so it stays a real variable */

__attribute__((noipa)) static int bump(int by) { /* a static function a patch calls (noipa: no .constprop clone) */
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

/* "c N" prints compute(N), "d N" depth(N), "m N" sets the scale (and prints it): 1 when [line]
 * was one of them, else 0. */
static int calc_command(const char* line) {
  int n = 0;
  if (sscanf(line, "c %d", &n) == 1) printf("%d\n", compute(n));
  else if (sscanf(line, "d %d", &n) == 1) printf("%d\n", depth(n));
  else if (sscanf(line, "m %d", &n) == 1) printf("%d\n", scale = n);
  else return 0;
  return 1;
}
#endif
