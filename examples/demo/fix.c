/* The live fix for server.c: guests (level 3) no longer get access. It keeps counting requests
 * in the server's own static counter (a static variable of the running program).
 *
 * It deliberately calls nothing: check_access() in the server is a leaf, and GCC's -fipa-ra
 * lets main() keep values in registers a leaf does not touch. A replacement that calls
 * fprintf() would clobber them; `livegraft apply` detects that and enters such a fix through an
 * entry thunk that preserves those registers (step 7 of scripts/demo.sh:
 * examples/demo/fix_with_logging.c). */
#include <livegraft/patch.h>

struct request {
  const char *user;
  int level;
};

extern unsigned long requests_served;   /* static in the server: resolved from its symbol table */

static int check_access_fixed(const struct request *r) {
  requests_served++;
  return r->level <= 2;
}

static struct livegraft_func funcs[] = {LIVEGRAFT_FUNC("check_access", check_access_fixed)};
static struct livegraft_object objects[] = {LIVEGRAFT_OBJECT(LIVEGRAFT_MAIN_EXECUTABLE, NULL, funcs)};
LIVEGRAFT_PATCH("fix-guest-access", 0, objects);
