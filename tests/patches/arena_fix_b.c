/* work() of arena_cycler.c answers x * 3 + 3 (a second patch on top of arena_fix). */
#include <livegraft/patch.h>

static int work_fixed_b(int x) { return x * 3 + 3; }

static struct livegraft_func funcs[] = {LIVEGRAFT_FUNC("work", work_fixed_b)};
static struct livegraft_object objects[] = {LIVEGRAFT_OBJECT(LIVEGRAFT_MAIN_EXECUTABLE, NULL, funcs)};
LIVEGRAFT_PATCH("arena-fix-b", 0, objects);
