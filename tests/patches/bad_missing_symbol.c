/* A patch that needs a function no object of the target defines. */
#include <livegraft/patch.h>

int livegraft_no_such_function(int);

static int compute_fixed(int x) { return livegraft_no_such_function(x); }

static struct livegraft_func funcs[] = {LIVEGRAFT_FUNC("compute", compute_fixed)};
static struct livegraft_object objects[] = {LIVEGRAFT_OBJECT(LIVEGRAFT_MAIN_EXECUTABLE, NULL, funcs)};
LIVEGRAFT_PATCH("bad-missing-symbol", 0, objects);
