/* For bench/dispatch_cost.cpp: bench_target(x) = x * 10 + 2, and a replacement of bench_hold
 * (the function a helper thread stays inside, so that the transition stays in progress). */
#include <livegraft/patch.h>

static int bench_target_fixed(int x) { return x * 10 + 2; }
static int bench_hold_fixed(volatile int* flag) { return flag ? 0 : 1; }

static struct livegraft_func funcs[] = {LIVEGRAFT_FUNC("bench_target", bench_target_fixed),
                                        LIVEGRAFT_FUNC("bench_hold", bench_hold_fixed)};
static struct livegraft_object objects[] = {LIVEGRAFT_OBJECT(LIVEGRAFT_MAIN_EXECUTABLE, NULL, funcs)};
LIVEGRAFT_PATCH("bench-dispatch", 0, objects);
