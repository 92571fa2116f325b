/* compute(x) = x * 10 + 2, for spinners.c, idle_threads.c and the examples. */
#include <livegraft/patch.h>

static int compute_fixed(int x) { return x * 10 + 2; }

static struct livegraft_func funcs[] = {LIVEGRAFT_FUNC("compute", compute_fixed)};
static struct livegraft_object objects[] = {LIVEGRAFT_OBJECT(LIVEGRAFT_MAIN_EXECUTABLE, NULL, funcs)};
LIVEGRAFT_PATCH("compute-plus2", 0, objects);
