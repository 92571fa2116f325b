/* Target for user-space stack switching (docs/consistency.md, "Stack switching"): a scheduler
 * thread runs two ucontext coroutines, each handling one request after another with handle():
 * encode(x), yield to the scheduler, decode(...). tests/patches/coro_pair_fix.c changes encode,
 * decode and handle together; a request encoded by one version and decoded by the other is
 * counted as a mismatch.
 *   argv[1] == "declare": the scheduler declares its contexts (livegraft_coroutines_declare,
 *   livegraft_swapcontext from a preloaded agent, include/livegraft/safepoint.h); otherwise it
 *   uses plain swapcontext(3).
 *   "h"  hold: the scheduler stops once both coroutines are suspended inside handle() ("held");
 *   "g"  go on ("going");
 *   "m"  print "<requests> <mismatches>";
 *   "q"  quit. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <ucontext.h>

#include "target_common.h"

static int (*swap)(ucontext_t*, const ucontext_t*) = swapcontext;
static ucontext_t sched_ctx, co_ctx[2];
static int current;
static atomic_int inside[2];
static atomic_int hold, held;
static atomic_long requests, mismatches;

__attribute__((noipa)) void yield(void) { swap(&co_ctx[current], &sched_ctx); }
__attribute__((noipa)) long encode(long x) { return x * 2 + 1; }
__attribute__((noipa)) long decode(long v) { return (v - 1) / 2; }

__attribute__((noipa)) int handle(long x) {
  atomic_store(&inside[current], 1);
  long v = encode(x);
  yield(); /* suspended here, inside handle(), between encoding and decoding */
  long r = decode(v);
  atomic_store(&inside[current], 0);
  return r == x;
}

static void coroutine(int id) {
  for (long n = id;; n += 2) {
    if (!handle(n)) atomic_fetch_add(&mismatches, 1);
    atomic_fetch_add(&requests, 1);
    yield(); /* suspended outside handle() */
  }
}

static void* scheduler(void* arg) {
  (void)arg;
  static char stacks[2][64 * 1024];
  for (int i = 0; i < 2; ++i) {
    getcontext(&co_ctx[i]);
    co_ctx[i].uc_stack.ss_sp = stacks[i];
    co_ctx[i].uc_stack.ss_size = sizeof stacks[i];
    co_ctx[i].uc_link = NULL;
    makecontext(&co_ctx[i], (void (*)(void))coroutine, 1, i);
  }
  for (;;) {
    for (int i = 0; i < 2; ++i) {
      current = i;
      swap(&sched_ctx, &co_ctx[i]);
    }
    if (atomic_load(&hold) && atomic_load(&inside[0]) && atomic_load(&inside[1])) {
      atomic_store(&held, 1);
      while (atomic_load(&hold)) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
      }
      atomic_store(&held, 0);
    }
    struct timespec ts = {0, 100000};
    nanosleep(&ts, NULL);
  }
  return NULL;
}

int main(int argc, char** argv) {
  if (argc > 1 && strcmp(argv[1], "declare") == 0) {
    int (*declare)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "livegraft_coroutines_declare");
    swap = (int (*)(ucontext_t*, const ucontext_t*))dlsym(RTLD_DEFAULT, "livegraft_swapcontext");
    if (!declare || !swap) {
      fprintf(stderr, "coro_pair declare: the livegraft agent is not loaded (LD_PRELOAD it)\n");
      return 3;
    }
    declare();
  }
  pthread_t t;
  pthread_create(&t, NULL, scheduler, NULL);
  char line[64];
  target_ready();
  while (fgets(line, sizeof line, stdin)) {
    if (line[0] == 'h') {
      atomic_store(&hold, 1);
      while (!atomic_load(&held)) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
      }
      printf("held\n");
    } else if (line[0] == 'g') {
      atomic_store(&hold, 0);
      printf("going\n");
    } else if (line[0] == 'm') {
      printf("%ld %ld\n", atomic_load(&requests), atomic_load(&mismatches));
    } else if (line[0] == 'q') {
      break;
    }
    fflush(stdout);
  }
  return 0;
}
