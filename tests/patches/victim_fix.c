/* Replaces victim_value() of libvictim.so (tests/programs/victim_lib.c), reading its static
 * offset: applied after the library file was deleted or replaced on disk. */
#include <livegraft/patch.h>

extern int offset; /* static in the library: resolved from its .symtab */

static int victim_value_fixed(int x) { return x * 10 + offset + 5; }

static struct livegraft_func funcs[] = {LIVEGRAFT_FUNC("victim_value", victim_value_fixed)};
static struct livegraft_object objects[] = {LIVEGRAFT_OBJECT("libvictim.so", NULL, funcs)};
LIVEGRAFT_PATCH("victim-fix", 0, objects);
