/* Changes both functions of tests/programs/pt_pair.c together: a call chain that mixed the
 * versions would compute 120 or 210 instead of 110 (old) or 220 (new). The new outer() blocks
 * on the target's own pipe like the old one. */
#include <errno.h>
#include <unistd.h>

#include <livegraft/patch.h>

extern int inner(void);
extern int gate[2]; /* static in the target: bound to its storage */

static int inner_new(void) { return 20; }
static int outer_new(int block) {
  if (block) {
    char c;
    while (read(gate[0], &c, 1) < 0 && errno == EINTR) {
    }
  }
  return inner() + 200;
}

static struct livegraft_func funcs[] = {LIVEGRAFT_FUNC("inner", inner_new), LIVEGRAFT_FUNC("outer", outer_new)};
static struct livegraft_object objects[] = {LIVEGRAFT_OBJECT(LIVEGRAFT_MAIN_EXECUTABLE, NULL, funcs)};
LIVEGRAFT_PATCH("pt-pair-fix", 0, objects);
