/* gate_wait() of entry_sleeper.c no longer makes the syscall. */
#include <livegraft/patch.h>

static long gate_wait_fixed(long nr) {
  (void)nr;
  return -2;
}

static struct livegraft_func funcs[] = {LIVEGRAFT_FUNC("gate_wait", gate_wait_fixed)};
static struct livegraft_object objects[] = {LIVEGRAFT_OBJECT(LIVEGRAFT_MAIN_EXECUTABLE, NULL, funcs)};
LIVEGRAFT_PATCH("entry-sleeper-fix", 0, objects);
