/* Target for the per-thread model under load: a "service" whose request handler encodes a value,
 * blocks in a system call, then decodes it. tests/patches/pt_format_fix.c changes the encoding,
 * the decoding AND the handler together; a request that mixed the versions (encoded with one
 * format, decoded or checked with the other) is counted as a mismatch.
 *   argv[1]  number of workers (default 8);
 *   argv[2]  "churn": instead of long-lived workers, a spawner keeps that many threads alive,
 *            each doing a few requests and exiting (threads created and exiting all the time).
 * Each worker loops: handle() (inside: encode, nanosleep, decode), then a nanosleep outside.
 *   "s"  prints "old A new B bad C threads T" (requests done by the old handler, the new one,
 *        mismatches, threads started so far);
 *   "q"  quits. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "target_common.h"

/* counts[1]: old handler, counts[2]: new handler, counts[0]: mismatches. Written by the
 * handlers themselves, so a request is counted while its handler is still on the stack. */
atomic_long pt_counts[3];
static atomic_long started;
static int churn;

static void pause_us(long us) {
  struct timespec ts = {0, us * 1000};
  nanosleep(&ts, NULL);
}

/* Not patched: the system call a request blocks in, inside the handler. */
__attribute__((noipa)) void pt_block(void) { pause_us(300); }

/* Old format: value << 8 | 0x01. */
__attribute__((noipa)) uint64_t pt_encode(long v) { return ((uint64_t)v << 8) | 0x01; }
__attribute__((noipa)) long pt_decode(uint64_t e) { return (e & 0xff) == 0x01 ? (long)(e >> 8) : -1; }

__attribute__((noipa)) void pt_handle(long v) {
  uint64_t e = pt_encode(v);
  pt_block();
  long d = pt_decode(e);
  atomic_fetch_add(&pt_counts[d == v && (e & 0xff) == 0x01 ? 1 : 0], 1);
}

static void* worker(void* arg) {
  long id = (long)arg;
  atomic_fetch_add(&started, 1);
  for (long i = 0; !churn || i < 5; ++i) {
    pt_handle(id * 1000003 + i);
    pause_us(300);
  }
  return NULL;
}

static void* spawner(void* arg) {
  long n = (long)arg;
  for (long k = 0;; ++k) {
    pthread_t t[64];
    for (long i = 0; i < n; ++i) pthread_create(&t[i], NULL, worker, (void*)(k * n + i));
    for (long i = 0; i < n; ++i) pthread_join(t[i], NULL);
  }
  return NULL;
}

int main(int argc, char** argv) {
  long n = argc > 1 ? atol(argv[1]) : 8;
  if (n < 1 || n > 64) n = 8;
  churn = argc > 2 && strcmp(argv[2], "churn") == 0;
  pthread_t t;
  if (churn) {
    pthread_create(&t, NULL, spawner, (void*)n);
  } else {
    for (long i = 0; i < n; ++i) pthread_create(&t, NULL, worker, (void*)i);
  }
  char line[64];
  target_ready();
  while (fgets(line, sizeof line, stdin)) {
    if (line[0] == 's') {
      printf("old %ld new %ld bad %ld threads %ld\n", atomic_load(&pt_counts[1]), atomic_load(&pt_counts[2]),
             atomic_load(&pt_counts[0]), atomic_load(&started));
    } else if (line[0] == 'q') {
      break;
    }
    fflush(stdout);
  }
  _exit(0); /* workers run forever */
}
