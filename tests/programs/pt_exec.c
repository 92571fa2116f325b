/* Target that replaces its program (execve of itself) in the middle of a livegraft command
 * (tests/e2e/exec_during_command_test.cpp). outer() and inner() are pt_pair.c's, so
 * tests/patches/pt_pair_fix.c patches it (old outer+inner = 110, new = 220).
 *   "b"  start a thread that blocks INSIDE outer() (reading a pipe) until "r";
 *   "r"  release it; it prints "done V";
 *   "c"  print outer(0);
 *   "g"  print the generation: 0 in the program started, 1 after one execve, ...;
 *   "e"  execve from the main thread (the thread group leader);
 *   "E"  execve from a new thread (not the leader: the kernel gives it the leader's tid);
 *   "q"  quit.
 * SIGUSR1 makes a thread of its own (waiting in sigwait, every other thread blocks SIGUSR1)
 * execve at once: a trigger that works while livegraft borrows the main thread. The new image
 * keeps stdin/stdout and says "ready" again. */
#include <signal.h>

#include "pt_pair.h"

static int generation;
static char self_path[4096];

static void run_again(void) {
  char gen[16];
  snprintf(gen, sizeof gen, "%d", generation + 1);
  char* argv[] = {self_path, gen, NULL};
  fflush(stdout);
  execv(self_path, argv);
  printf("execv failed: %s\n", strerror(errno));
  fflush(stdout);
}

static void* exec_thread(void* arg) {
  (void)arg;
  run_again();
  return NULL;
}

static void* on_signal(void* arg) {
  sigset_t* set = arg;
  int sig = 0;
  while (sigwait(set, &sig) != 0 || sig != SIGUSR1) {
  }
  run_again();
  return NULL;
}

static enum pt_command exec_command(const char* line) {
  pthread_t t;
  switch (line[0]) {
    case 'g':
      printf("%d\n", generation);
      return PT_ANSWERED;
    case 'e':
      run_again();
      return PT_ANSWERED;
    case 'E':
      pthread_create(&t, NULL, exec_thread, NULL);
      pthread_detach(t);
      return PT_SILENT; /* the new image says "ready" */
  }
  return PT_OTHER;
}

int main(int argc, char** argv) {
  if (argc > 1) generation = atoi(argv[1]);
  ssize_t n = readlink("/proc/self/exe", self_path, sizeof self_path - 1);
  if (n <= 0 || pipe(gate) != 0) return 1;
  self_path[n] = 0;
  static sigset_t usr1;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &usr1, NULL); /* inherited by every thread, the sigwait one too */
  pthread_t t;
  if (pthread_create(&t, NULL, on_signal, &usr1) != 0) return 1;
  pthread_detach(t);
  pt_command_loop(exec_command);
  return 0;
}
