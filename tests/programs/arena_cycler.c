/* A multi-threaded target for giving back the agent's retired code (docs/consistency.md,
 * "Memory"). Three workers call work() all the time and count answers that are neither the
 * original's nor a fix's. A fourth thread can be parked with a return address inside the
 * relocated entry of park_entry(), whose first instruction is a call that blocks:
 *   "c N"  prints work(N)            "e"  prints how many wrong answers the workers saw
 *   "h"    starts the parking thread: it waits in park_hold() (read of a pipe) ("holding")
 *   "g"    lets it call park_entry(): it blocks in park_wait() (pause) below the call ("going")
 *   "r"    wakes it (SIGUSR1) and joins it: "returned N" (park_entry's value)
 *   "q"    quits */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <unistd.h>

#include "target_common.h"

__attribute__((noinline)) int work(int x) {
  if (x < 0) return -1;
  return x * 3 + 1;  /* the fix: x * 3 + 2 */
}

static atomic_long wrong;
static atomic_int stop;

static void* worker(void* arg) {
  int i = (int)(long)arg;
  while (!atomic_load(&stop)) {
    int v = work(i);
    if (v < i * 3 + 1 || v > i * 3 + 3) atomic_fetch_add(&wrong, 1);  /* original, arena_fix, arena_fix_b */
    i = (i + 7) % 1000;
  }
  return NULL;
}

void park_wait(void);
__attribute__((noinline)) void park_wait(void) { pause(); }

/* First instruction: a 5-byte call, so the entry jump displaces exactly it and the relocated
 * entry (the continuation) holds `call park_wait`: a thread blocked in park_wait() has its
 * return address inside the continuation. */
int park_entry(void);
__asm__(
    "  .text\n"
    "  .globl park_entry\n"
    "  .type park_entry, @function\n"
    "park_entry:\n"
    "  .cfi_startproc\n"
    "  call park_wait\n"
    "  mov $42, %eax\n"
    "  ret\n"
    "  .cfi_endproc\n"
    "  .size park_entry, .-park_entry\n");

static int go_pipe[2];
static int parked_result;

__attribute__((noinline)) int park_hold(void) {
  char c;
  if (read(go_pipe[0], &c, 1) != 1) return -1;
  return park_entry();
}

static void* parker(void* arg) {
  (void)arg;
  parked_result = park_hold();
  return NULL;
}

static void on_usr1(int sig) { (void)sig; }

int main(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1;
  sigaction(SIGUSR1, &sa, NULL);
  if (pipe(go_pipe) != 0) return 1;
  pthread_t workers[3], park;
  for (long i = 0; i < 3; ++i) pthread_create(&workers[i], NULL, worker, (void*)(i * 100));
  int parking = 0;
  char line[64];
  target_ready();
  while (fgets(line, sizeof line, stdin)) {
    int n = 0;
    if (sscanf(line, "c %d", &n) == 1) printf("%d\n", work(n));
    else if (line[0] == 'e') printf("%ld\n", atomic_load(&wrong));
    else if (line[0] == 'h' && !parking) {
      parking = pthread_create(&park, NULL, parker, NULL) == 0;
      printf("%s\n", parking ? "holding" : "failed");
    } else if (line[0] == 'g' && parking) {
      printf("%s\n", write(go_pipe[1], "g", 1) == 1 ? "going" : "failed");
    } else if (line[0] == 'r' && parking) {
      pthread_kill(park, SIGUSR1);
      pthread_join(park, NULL);
      parking = 0;
      printf("returned %d\n", parked_result);
    } else if (line[0] == 'q') break;
    else printf("?\n");
    fflush(stdout);
  }
  atomic_store(&stop, 1);
  for (int i = 0; i < 3; ++i) pthread_join(workers[i], NULL);
  return 0;
}
