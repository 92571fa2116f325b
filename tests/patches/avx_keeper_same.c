/* same() of tests/programs/avx_keeper.c, now adding one (a VEX vaddsd when built with -mavx2:
 * it zeroes the upper half of ymm0, which the original left alone, in the register that carries
 * the return value). Refused: an entry thunk cannot restore that half apart from the value. */
#include <livegraft/patch.h>

static double same_fixed(double x) { return x + 1; }

static struct livegraft_func funcs[] = {LIVEGRAFT_FUNC("same", same_fixed)};
static struct livegraft_object objects[] = {LIVEGRAFT_OBJECT(LIVEGRAFT_MAIN_EXECUTABLE, NULL, funcs)};
LIVEGRAFT_PATCH("avx-keeper-same", 0, objects);
