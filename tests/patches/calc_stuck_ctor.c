/* A patch for tests/programs/calc.c whose constructor never returns (it waits for a signal
 * the agent's threads all block): the agent must keep answering and report it. */
#include <livegraft/patch.h>
#include <unistd.h>

extern int scale; /* static in the target */

__attribute__((constructor)) static void wait_forever(void) {
  for (;;) pause();
}

static int compute_fixed(int x) { return x * scale + 3; }

static struct livegraft_func funcs[] = {LIVEGRAFT_FUNC("compute", compute_fixed)};
static struct livegraft_object objects[] = {LIVEGRAFT_OBJECT(LIVEGRAFT_MAIN_EXECUTABLE, NULL, funcs)};
LIVEGRAFT_PATCH("calc-stuck-ctor", 0, objects);
