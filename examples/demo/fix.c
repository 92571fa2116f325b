/* The live fix for server.c: guests (level 3) no longer get access. It keeps counting requests
 * in the server's own static counter and logs each refusal with libc's fprintf. */
#include <livegraft/patch.h>
#include <stdio.h>

struct request {
  const char *user;
  int level;
};

extern unsigned long requests_served;   /* static in the server: resolved from its symbol table */

static int check_access_fixed(const struct request *r) {
  requests_served++;
  if (r->level > 2) fprintf(stderr, "  [patched] refusing %s\n", r->user);
  return r->level <= 2;
}

static struct livegraft_func funcs[] = {LIVEGRAFT_FUNC("check_access", check_access_fixed)};
static struct livegraft_object objects[] = {LIVEGRAFT_OBJECT(LIVEGRAFT_MAIN_EXECUTABLE, NULL, funcs)};
LIVEGRAFT_PATCH("fix-guest-access", 0, objects);
