/* Replaces compute() and depth() of tests/programs/calc.c at once: a patch whose switch is
 * two code writes (tests/e2e/kill_points_test.cpp kills the controller between them). Old:
 * compute(5) = 51, depth(3) = 3; new: 52 and 1003. */
#include <livegraft/patch.h>

extern int scale; /* static in the target */
int bump(int by); /* static in the target */

static int compute_fixed(int x) {
  bump(1);
  return x * scale + 2;
}

static int depth_fixed(int n) { return n + 1000; }

static struct livegraft_func funcs[] = {LIVEGRAFT_FUNC("compute", compute_fixed), LIVEGRAFT_FUNC("depth", depth_fixed)};
static struct livegraft_object objects[] = {LIVEGRAFT_OBJECT(LIVEGRAFT_MAIN_EXECUTABLE, NULL, funcs)};
LIVEGRAFT_PATCH("calc-two", 0, objects);
