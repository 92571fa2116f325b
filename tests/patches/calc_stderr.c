/* compute() of tests/programs/calc.c logging to stderr, compiled -fPIE (as a project's own
 * build compiles it): `stderr` is reached PC-relatively, and calc has no copy of it. */
#include <livegraft/patch.h>
#include <stdio.h>

extern int scale; /* static in the target */

static int compute_logged(int x) {
  fprintf(stderr, "compute(%d)\n", x);
  return x * scale + (fileno(stderr) == 2 ? 3 : 100);
}

static struct livegraft_func funcs[] = {LIVEGRAFT_FUNC("compute", compute_logged)};
static struct livegraft_object objects[] = {LIVEGRAFT_OBJECT(LIVEGRAFT_MAIN_EXECUTABLE, NULL, funcs)};
LIVEGRAFT_PATCH("calc-stderr", 0, objects);
