/* Changes the format of tests/programs/pt_format.c: encoding, decoding and the handler that
 * calls both, together (new format: value << 16 | 0x0202). The old decoder refuses the new
 * format and the new one the old, so a request that mixed versions is counted as bad. */
#include <stdatomic.h>
#include <stdint.h>

#include <livegraft/patch.h>

extern atomic_long pt_counts[3];
extern void pt_block(void);
extern uint64_t pt_encode(long v);
extern long pt_decode(uint64_t e);

static uint64_t encode_new(long v) { return ((uint64_t)v << 16) | 0x0202; }
static long decode_new(uint64_t e) { return (e & 0xffff) == 0x0202 ? (long)(e >> 16) : -1; }

static void handle_new(long v) {
  uint64_t e = pt_encode(v); /* through the target's entry: the dispatch picks the version */
  pt_block();
  long d = pt_decode(e);
  atomic_fetch_add(&pt_counts[d == v && (e & 0xffff) == 0x0202 ? 2 : 0], 1);
}

static struct livegraft_func funcs[] = {LIVEGRAFT_FUNC("pt_encode", encode_new), LIVEGRAFT_FUNC("pt_decode", decode_new),
                                        LIVEGRAFT_FUNC("pt_handle", handle_new)};
static struct livegraft_object objects[] = {LIVEGRAFT_OBJECT(LIVEGRAFT_MAIN_EXECUTABLE, NULL, funcs)};
LIVEGRAFT_PATCH("pt-format-fix", 0, objects);
