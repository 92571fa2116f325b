/* Replaces compute() of tests/programs/calc.c: reads the target's static `scale`, calls its
 * static bump() (so the static counter keeps its live state) and libc functions. */
#include <livegraft/patch.h>
#include <stdio.h>
#include <string.h>

extern int scale;     /* static in the target: resolved from its .symtab */
int bump(int by);     /* static in the target */

static int compute_fixed(int x) {
  char buf[32];
  snprintf(buf, sizeof buf, "%d", x);
  bump(100);
  return x * scale + 2 + (strlen(buf) > 30); /* strlen: an IFUNC in glibc */
}

static struct livegraft_func funcs[] = {LIVEGRAFT_FUNC("compute", compute_fixed)};
static struct livegraft_object objects[] = {LIVEGRAFT_OBJECT(LIVEGRAFT_MAIN_EXECUTABLE, NULL, funcs)};
LIVEGRAFT_PATCH("calc-fix", 0, objects);
