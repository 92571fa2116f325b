/* A patch bound to a build-id no test program has. */
#include <livegraft/patch.h>

static int compute_fixed(int x) { return x * 10 + 2; }

static struct livegraft_func funcs[] = {LIVEGRAFT_FUNC("compute", compute_fixed)};
static struct livegraft_object objects[] = {
    LIVEGRAFT_OBJECT(LIVEGRAFT_MAIN_EXECUTABLE, "00112233445566778899aabbccddeeff00112233", funcs)};
LIVEGRAFT_PATCH("bad-build-id", 0, objects);
