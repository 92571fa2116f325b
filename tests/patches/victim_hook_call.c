/* describe() of tests/programs/victim.c calling through libvictim's function pointer, compiled
 * -fPIE: `jmp/call *victim_hook(%rip)` branches through far data, which the loader cannot
 * rewrite: refused before the process is touched. */
#include <livegraft/patch.h>

extern int (*victim_hook)(int);

static int describe_hooked(int n) { return victim_hook(n) + 1; }

static struct livegraft_func funcs[] = {LIVEGRAFT_FUNC("describe", describe_hooked)};
static struct livegraft_object objects[] = {LIVEGRAFT_OBJECT(LIVEGRAFT_MAIN_EXECUTABLE, NULL, funcs)};
LIVEGRAFT_PATCH("victim-hook-call", 0, objects);
