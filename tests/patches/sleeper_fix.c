/* compute() of tests/programs/sleeper.c returns 2 instead of 1. */
#include <livegraft/patch.h>

static int compute_fixed(int nap_ms) {
  (void)nap_ms;
  return 2;
}

static struct livegraft_func funcs[] = {LIVEGRAFT_FUNC("compute", compute_fixed)};
static struct livegraft_object objects[] = {LIVEGRAFT_OBJECT(LIVEGRAFT_MAIN_EXECUTABLE, NULL, funcs)};
LIVEGRAFT_PATCH("sleeper-fix", 0, objects);
