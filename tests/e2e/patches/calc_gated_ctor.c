/* A patch for tests/programs/calc_fork.c whose constructor makes its load a request that takes
 * as long as the test wants: it opens the FIFO named by LG_TEST_CTOR_GATE in the target's
 * environment (the test's open for writing returns once it does: "the load is running") and
 * reads one byte (the test writes it: "finish"). depth(n) becomes n + 1000. */
#include <fcntl.h>
#include <livegraft/patch.h>
#include <stdlib.h>
#include <unistd.h>

__attribute__((constructor)) static void wait_for_the_gate(void) {
  const char* gate = getenv("LG_TEST_CTOR_GATE");
  if (!gate) return;
  int fd = open(gate, O_RDONLY);
  if (fd < 0) return;
  char c;
  while (read(fd, &c, 1) < 0) {
  }
  close(fd);
}

static int depth_gated(int n) { return n + 1000; }

static struct livegraft_func funcs[] = {LIVEGRAFT_FUNC("depth", depth_gated)};
static struct livegraft_object objects[] = {LIVEGRAFT_OBJECT(LIVEGRAFT_MAIN_EXECUTABLE, NULL, funcs)};
LIVEGRAFT_PATCH("calc-gated-ctor", 0, objects);
