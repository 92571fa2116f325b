/* Replaces loop(), the start function of tests/programs/pt_loop.c's thread (it runs for the
 * thread's whole life): no consistent switch can ever happen for that thread. */
#include <stdatomic.h>

#include <livegraft/patch.h>

extern int handle(void);
extern atomic_int last; /* static in the target: resolved from its symbol table */

static void *loop_new(void *arg) {
  (void)arg;
  for (;;) atomic_store(&last, handle() + 10);
  return 0;
}

static struct livegraft_func funcs[] = {LIVEGRAFT_FUNC("loop", loop_new)};
static struct livegraft_object objects[] = {LIVEGRAFT_OBJECT(LIVEGRAFT_MAIN_EXECUTABLE, NULL, funcs)};
LIVEGRAFT_PATCH("pt-loop-start-fix", 0, objects);
