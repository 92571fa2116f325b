/* handle() of tests/programs/pt_loop.c returns 2 (and still takes 20 ms). */
#include <time.h>

#include <livegraft/patch.h>

static int handle_new(void) {
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  do {
    clock_gettime(CLOCK_MONOTONIC, &b);
  } while ((b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec) < 20000000LL);
  return 2;
}

static struct livegraft_func funcs[] = {LIVEGRAFT_FUNC("handle", handle_new)};
static struct livegraft_object objects[] = {LIVEGRAFT_OBJECT(LIVEGRAFT_MAIN_EXECUTABLE, NULL, funcs)};
LIVEGRAFT_PATCH("pt-loop-fix", 0, objects);
