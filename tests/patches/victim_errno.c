/* describe() of tests/programs/victim.c reporting libvictim's errno-style global, compiled
 * -fPIE: a load (mov victim_errno(%rip)) and an address (lea victim_errno(%rip)) of data that
 * lives in the library, out of reach of the executable. */
#include <livegraft/patch.h>

extern int victim_errno;
int victim_value(int x);
int* victim_errno_location(void);

static int describe_fixed(int n) {
  int v = victim_value(n);
  int same = &victim_errno == victim_errno_location();
  return v + 1000 * victim_errno + (same ? 0 : 500000);
}

static struct livegraft_func funcs[] = {LIVEGRAFT_FUNC("describe", describe_fixed)};
static struct livegraft_object objects[] = {LIVEGRAFT_OBJECT(LIVEGRAFT_MAIN_EXECUTABLE, NULL, funcs)};
LIVEGRAFT_PATCH("victim-errno", 0, objects);
