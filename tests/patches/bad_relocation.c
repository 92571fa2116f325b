/* Compiled with -mcmodel=large -fPIC: R_X86_64_GOTPC64/GOTOFF64/PLTOFF64, which the loader does
 * not support. */
#include <livegraft/patch.h>
#include <stdio.h>

static int counter;

static int compute_fixed(int x) {
  counter++;
  printf("%d\n", x);
  return x * 10 + 2 + counter * 0;
}

static struct livegraft_func funcs[] = {LIVEGRAFT_FUNC("compute", compute_fixed)};
static struct livegraft_object objects[] = {LIVEGRAFT_OBJECT(LIVEGRAFT_MAIN_EXECUTABLE, NULL, funcs)};
LIVEGRAFT_PATCH("bad-relocation", 0, objects);
