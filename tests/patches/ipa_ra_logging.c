/* check() of tests/programs/ipa_ra.c, calling fprintf: clobbers registers callers may rely on. */
#include <livegraft/patch.h>
#include <stdio.h>

struct request {
  const char* user;
  int level;
};

static int check_fixed(const struct request* r) {
  if (r->level > 2) fprintf(stderr, "refusing %s\n", r->user);
  return r->level <= 2;
}

static struct livegraft_func funcs[] = {LIVEGRAFT_FUNC("check", check_fixed)};
static struct livegraft_object objects[] = {LIVEGRAFT_OBJECT(LIVEGRAFT_MAIN_EXECUTABLE, NULL, funcs)};
LIVEGRAFT_PATCH("ipa-ra-logging", 0, objects);
