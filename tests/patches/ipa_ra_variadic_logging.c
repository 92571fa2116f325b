/* vcheck() of tests/programs/ipa_ra.c, logging: main() keeps %rdi across the call, and vcheck()
 * is variadic, so no entry thunk can wrap it: refused. */
#include <livegraft/patch.h>
#include <stdarg.h>
#include <stdio.h>

struct request {
  const char* user;
  int level;
};

static int vcheck_logged(const struct request* r, ...) {
  va_list ap;
  va_start(ap, r);
  int x = va_arg(ap, int);
  va_end(ap);
  fprintf(stderr, "vcheck %s\n", r->user);
  return r->level + x <= 2;
}

static struct livegraft_func funcs[] = {LIVEGRAFT_FUNC("vcheck", vcheck_logged)};
static struct livegraft_object objects[] = {LIVEGRAFT_OBJECT(LIVEGRAFT_MAIN_EXECUTABLE, NULL, funcs)};
LIVEGRAFT_PATCH("ipa-ra-variadic-logging", 0, objects);
