/* Replaces depth() of tests/programs/calc.c with a version that recurses through the original
 * entry point (which now jumps here): depth(n) becomes 2n. */
#include <livegraft/patch.h>

int depth(int n);

static int depth_fixed(int n) {
  if (n <= 0) return 0;
  return depth(n - 1) + 2;
}

static struct livegraft_func funcs[] = {LIVEGRAFT_FUNC("depth", depth_fixed)};
static struct livegraft_object objects[] = {LIVEGRAFT_OBJECT(LIVEGRAFT_MAIN_EXECUTABLE, NULL, funcs)};
LIVEGRAFT_PATCH("calc-depth", 0, objects);
