/* check() of tests/programs/ipa_ra.c: same registers as the original (no calls). */
#include <livegraft/patch.h>

struct request {
  const char* user;
  int level;
};

static int check_fixed(const struct request* r) { return r->level <= 2; }

static struct livegraft_func funcs[] = {LIVEGRAFT_FUNC("check", check_fixed)};
static struct livegraft_object objects[] = {LIVEGRAFT_OBJECT(LIVEGRAFT_MAIN_EXECUTABLE, NULL, funcs)};
LIVEGRAFT_PATCH("ipa-ra-quiet", 0, objects);
