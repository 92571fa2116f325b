/* outer() and inner(), the pair that tests/patches/pt_pair_fix.c patches (old outer+inner = 110,
 * new = 220; a call chain that mixed the versions would compute 120 or 210), the pipe outer(1)
 * blocks on, and the commands that drive them: one copy for pt_pair.c, pt_exec.c, pt_hazards.c
 * and hand_stack.c (which blocks outer() on a private stack: it defines PT_OWN_OUTER and brings
 * its own gate, outer() and inner()). */
#ifndef PT_PAIR_H
#define PT_PAIR_H
#include <errno.h>
#include <pthread.h>
#include <unistd.h>

#include "target_common.h"

#ifdef PT_OWN_OUTER
extern int gate[2];
int outer(int block);
#else
/* The pipe outer(1) blocks on; the patch's outer() reads it too (bound to this storage). */
static int gate[2];

__attribute__((noipa)) int inner(void) { return 10; }

__attribute__((noipa)) int outer(int block) {
  if (block) {
    char c;
    while (read(gate[0], &c, 1) < 0 && errno == EINTR) {
    }
  }
  return inner() + 100;
}
#endif

/* A thread that blocks INSIDE outer(1) until "r", then prints "done V" (V = outer's result). */
__attribute__((unused)) static void* blocked(void* arg) {
  (void)arg;
  int r = outer(1);
  printf("done %d\n", r);
  fflush(stdout);
  return NULL;
}

/* Idle threads: blocked in read on a pipe nobody writes, outside the patched functions (the
 * target makes the pipe). */
__attribute__((unused)) static int never[2];

__attribute__((unused)) static void* idle(void* arg) {
  (void)arg;
  char c;
  while (read(never[0], &c, 1) < 0 && errno == EINTR) {
  }
  return NULL;
}

/* The commands of a target built on the pair: "b" starts a thread in blocked() and says
 * "started", "r" releases one (it answers itself), "c" prints outer(0). */
enum pt_command { PT_OTHER, PT_ANSWERED, PT_SILENT };

__attribute__((unused)) static enum pt_command pt_pair_command(char cmd) {
  pthread_t t;
  if (cmd == 'b') {
    pthread_create(&t, NULL, blocked, NULL);
    pthread_detach(t);
    printf("started\n");
    return PT_ANSWERED;
  }
  if (cmd == 'r') {
    if (write(gate[1], "x", 1) != 1) exit(2);
    return PT_SILENT; /* the released thread answers */
  }
  if (cmd == 'c') {
    printf("%d\n", outer(0));
    return PT_ANSWERED;
  }
  return PT_OTHER;
}

/* Says "ready", then runs commands from stdin until its end or "q": the pair's own
 * (pt_pair_command), else the target's [other] (NULL: none), which answers like it (PT_OTHER:
 * an unknown command, ignored). The answer is flushed unless another thread gives it. */
__attribute__((unused)) static void pt_command_loop(enum pt_command (*other)(const char* line)) {
  char line[64];
  target_ready();
  while (fgets(line, sizeof line, stdin)) {
    if (line[0] == 'q') break;
    enum pt_command done = pt_pair_command(line[0]);
    if (done == PT_OTHER && other) done = other(line);
    if (done == PT_SILENT) continue;
    fflush(stdout);
  }
}
#endif
