/* work() of arena_cycler.c answers x * 3 + 2. */
#include <livegraft/patch.h>

static int work_fixed(int x) { return x * 3 + 2; }

static struct livegraft_func funcs[] = {LIVEGRAFT_FUNC("work", work_fixed)};
static struct livegraft_object objects[] = {LIVEGRAFT_OBJECT(LIVEGRAFT_MAIN_EXECUTABLE, NULL, funcs)};
LIVEGRAFT_PATCH("arena-fix", 0, objects);
