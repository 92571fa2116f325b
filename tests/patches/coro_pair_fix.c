/* Changes the encoding, the decoding and the handler of tests/programs/coro_pair.c together: a
 * request encoded by one version and decoded by the other fails coro_pair's check. The new
 * handler calls the target's encode/decode (redirected to the new versions) and yield. */
#include <stdatomic.h>

#include <livegraft/patch.h>

extern long encode(long x);
extern long decode(long v);
extern void yield(void);
extern int current;              /* static in the target: bound to its storage */
extern atomic_int inside[2];

static long encode_new(long x) { return x + 1000000; }
static long decode_new(long v) { return v - 1000000; }
static int handle_new(long x) {
  atomic_store(&inside[current], 1);
  long v = encode(x);
  yield();
  long r = decode(v);
  atomic_store(&inside[current], 0);
  return r == x;
}

static struct livegraft_func funcs[] = {LIVEGRAFT_FUNC("encode", encode_new), LIVEGRAFT_FUNC("decode", decode_new),
                                        LIVEGRAFT_FUNC("handle", handle_new)};
static struct livegraft_object objects[] = {LIVEGRAFT_OBJECT(LIVEGRAFT_MAIN_EXECUTABLE, NULL, funcs)};
LIVEGRAFT_PATCH("coro-pair-fix", 0, objects);
