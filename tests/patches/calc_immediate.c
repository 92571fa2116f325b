/* tests/programs/calc.c's compute() changed by a patch that declares itself immediate
 * (LIVEGRAFT_PATCH_IMMEDIATE): it may be applied with --model immediate. */
#include <livegraft/patch.h>

extern int scale; /* static in the target: resolved from its .symtab */

static int compute_immediate(int x) { return x * scale + 2; }

static struct livegraft_func funcs[] = {LIVEGRAFT_FUNC("compute", compute_immediate)};
static struct livegraft_object objects[] = {LIVEGRAFT_OBJECT(LIVEGRAFT_MAIN_EXECUTABLE, NULL, funcs)};
LIVEGRAFT_PATCH("calc-immediate", LIVEGRAFT_PATCH_IMMEDIATE, objects);
