/* A patch replacing a function the target does not have. */
#include <livegraft/patch.h>

static int fixed(int x) { return x; }

static struct livegraft_func funcs[] = {LIVEGRAFT_FUNC("livegraft_not_in_target", fixed)};
static struct livegraft_object objects[] = {LIVEGRAFT_OBJECT(LIVEGRAFT_MAIN_EXECUTABLE, NULL, funcs)};
LIVEGRAFT_PATCH("bad-missing-function", 0, objects);
