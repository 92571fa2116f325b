/* answer() of tests/programs/stranger_sigblock.c returns 2 * x (the original: x + 0).
 * -DIMMEDIATE: flagged for --model immediate. */
#include <livegraft/patch.h>

static int answer_new(int x) { return 2 * x; }

static struct livegraft_func funcs[] = {LIVEGRAFT_FUNC("answer", answer_new)};
static struct livegraft_object objects[] = {LIVEGRAFT_OBJECT(LIVEGRAFT_MAIN_EXECUTABLE, NULL, funcs)};
#ifdef IMMEDIATE
LIVEGRAFT_PATCH("stranger-sigblock-fix", LIVEGRAFT_PATCH_IMMEDIATE, objects);
#else
LIVEGRAFT_PATCH("stranger-sigblock-fix", 0, objects);
#endif
