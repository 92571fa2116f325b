/* describe() of tests/programs/victim.c clearing and testing libvictim's victim_errno,
 * compiled -fPIE: a store (movl $0, victim_errno(%rip)) and a compare with memory of far data,
 * which the loader rewrites through a thunk with a scratch register. */
#include <livegraft/patch.h>

extern int victim_errno;
int victim_value(int x);

static int describe_clearing(int n) {
  victim_errno = 0;
  int v = victim_value(n);
  if (victim_errno == 4) return 4444;
  return v + 100 * victim_errno;
}

static struct livegraft_func funcs[] = {LIVEGRAFT_FUNC("describe", describe_clearing)};
static struct livegraft_object objects[] = {LIVEGRAFT_OBJECT(LIVEGRAFT_MAIN_EXECUTABLE, NULL, funcs)};
LIVEGRAFT_PATCH("victim-errno-store", 0, objects);
