/* check() of tests/programs/ipa_ra.c, entered through an entry thunk (it calls libc), that
 * waits for one more input line for level 3: a thread then sits in the replacement, below the
 * thunk, so stack walks must unwind through the thunk's CFI. */
#include <livegraft/patch.h>
#include <stdio.h>

struct request {
  const char* user;
  int level;
};

static int check_waiting(const struct request* r) {
  if (r->level > 2) {
    char line[16];
    if (!fgets(line, sizeof line, stdin)) return 0;
  }
  return r->level <= 2;
}

static struct livegraft_func funcs[] = {LIVEGRAFT_FUNC("check", check_waiting)};
static struct livegraft_object objects[] = {LIVEGRAFT_OBJECT(LIVEGRAFT_MAIN_EXECUTABLE, NULL, funcs)};
LIVEGRAFT_PATCH("ipa-ra-blocking", 0, objects);
