/* bench_target(x) = x * 10 + 2, for bench/call_overhead.cpp. */
#include <livegraft/patch.h>

static int bench_target_fixed(int x) { return x * 10 + 2; }

static struct livegraft_func funcs[] = {LIVEGRAFT_FUNC("bench_target", bench_target_fixed)};
static struct livegraft_object objects[] = {LIVEGRAFT_OBJECT(LIVEGRAFT_MAIN_EXECUTABLE, NULL, funcs)};
LIVEGRAFT_PATCH("bench-plus2", 0, objects);
