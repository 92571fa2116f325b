/* many() of tests/programs/ipa_ra.c, logging: main() keeps %rdi across the call, and many()'s
 * seventh argument is on the stack, so no entry thunk can preserve it: refused. */
#include <livegraft/patch.h>
#include <stdio.h>

struct request {
  const char* user;
  int level;
};

static int many_logged(const struct request* r, int a, int b, int c, int d, int e, int f) {
  fprintf(stderr, "many %s\n", r->user);
  return r->level + a + b + c + d + e + f <= 8;
}

static struct livegraft_func funcs[] = {LIVEGRAFT_FUNC("many", many_logged)};
static struct livegraft_object objects[] = {LIVEGRAFT_OBJECT(LIVEGRAFT_MAIN_EXECUTABLE, NULL, funcs)};
LIVEGRAFT_PATCH("ipa-ra-many-logging", 0, objects);
