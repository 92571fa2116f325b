/* describe() of tests/programs/victim.c clearing libvictim's victim_errno, compiled -fPIE: a
 * store (movl $0, victim_errno(%rip)) to far data, which the loader cannot rewrite: refused
 * before the process is touched. */
#include <livegraft/patch.h>

extern int victim_errno;
int victim_value(int x);

static int describe_clearing(int n) {
  victim_errno = 0;
  return victim_value(n);
}

static struct livegraft_func funcs[] = {LIVEGRAFT_FUNC("describe", describe_clearing)};
static struct livegraft_object objects[] = {LIVEGRAFT_OBJECT(LIVEGRAFT_MAIN_EXECUTABLE, NULL, funcs)};
LIVEGRAFT_PATCH("victim-errno-store", 0, objects);
