/* park_hold() and park_entry() of arena_cycler.c: the parking thread is held by park_hold()
 * on its stack, so it keeps calling the originals (through their relocated entries). */
#include <livegraft/patch.h>

static int park_entry_fixed(void) { return 43; }
static int park_hold_fixed(void) { return 44; }

static struct livegraft_func funcs[] = {LIVEGRAFT_FUNC("park_entry", park_entry_fixed), LIVEGRAFT_FUNC("park_hold", park_hold_fixed)};
static struct livegraft_object objects[] = {LIVEGRAFT_OBJECT(LIVEGRAFT_MAIN_EXECUTABLE, NULL, funcs)};
LIVEGRAFT_PATCH("arena-park-fix", 0, objects);
