/* Target for the per-thread hazards (tests/e2e/per_thread_signal_test.cpp, per_thread_fork_test.cpp,
 * per_thread_kill_test.cpp). Same outer()/inner() pair as pt_pair.c, so tests/patches/pt_pair_fix.c
 * applies to it: old outer+inner = 110, new = 220, a mix 120 or 210.
 *   "b"    start a thread that blocks INSIDE outer() (reading a pipe) until "r", then prints
 *          "done V" (V = outer's result);
 *   "r"    release it;
 *   "c"    print outer(0);
 *   "s"    send SIGUSR1 to the last blocked thread; its handler prints "in handler", blocks
 *          (reading another pipe, in the handler itself, outer() of the interrupted thread below
 *          the signal frame) until "h", then calls outer(0) and prints "handler V";
 *   "h"    release the handler;
 *   "f"    fork: the child (one thread: this one) prints "child PID V" with V = outer(0),
 *          then runs the commands the parent passes on with "F X" (prints outer(0) for "c",
 *          exits for "q"); the parent prints nothing more for "f";
 *   "F X"  pass command X to the child;
 *   "e"    fork a child that execs /bin/true at once; prints "exec child PID STATUS" when reaped;
 *   "i"    start 4 idle threads (blocked in read, outside the patched functions);
 *   "q"    quit. */
#include <signal.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "pt_pair.h"

static int handler_gate[2];
static int child_cmd[2];
static atomic_int blocked_tid;

static void put_line(const char* what, long v) {
  char buf[64];
  int n = snprintf(buf, sizeof buf, "%s %ld\n", what, v);
  (void)!write(1, buf, (size_t)n);
}

/* Runs in the thread interrupted inside outer(): blocks here, then calls outer() itself. */
static void on_usr1(int sig) {
  (void)sig;
  int saved = errno;
  (void)!write(1, "in handler\n", 11);
  char c;
  while (read(handler_gate[0], &c, 1) < 0 && errno == EINTR) {
  }
  put_line("handler", outer(0));
  errno = saved;
}

/* blocked() of pt_pair.h, which also says which thread it is (for "s"). */
static void* blocked_noting_tid(void* arg) {
  (void)arg;
  atomic_store(&blocked_tid, (int)syscall(SYS_gettid));
  int r = outer(1);
  put_line("done", r);
  return NULL;
}

static void child_loop(void) {
  char buf[64];
  int n = snprintf(buf, sizeof buf, "child %d %d\n", (int)getpid(), outer(0));
  (void)!write(1, buf, (size_t)n);
  char c;
  for (;;) {
    ssize_t got = read(child_cmd[0], &c, 1);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0 || c == 'q') _exit(0);
    if (c == 'c') put_line("child", outer(0));
  }
}

int main(void) {
  if (pipe(gate) != 0 || pipe(handler_gate) != 0 || pipe(child_cmd) != 0 || pipe(never) != 0) return 1;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1; /* no SA_RESTART: the interrupted read returns EINTR and loops */
  sigaction(SIGUSR1, &sa, NULL);
  char line[64];
  target_ready();
  while (fgets(line, sizeof line, stdin)) {
    pthread_t t;
    if (line[0] == 'b') {
      atomic_store(&blocked_tid, 0);
      pthread_create(&t, NULL, blocked_noting_tid, NULL);
      pthread_detach(t);
      while (atomic_load(&blocked_tid) == 0) usleep(100);
      printf("started\n");
    } else if (line[0] == 'r') {
      if (write(gate[1], "x", 1) != 1) return 2;
      continue; /* the released thread answers */
    } else if (line[0] == 'c') {
      printf("%d\n", outer(0));
    } else if (line[0] == 's') {
      syscall(SYS_tgkill, getpid(), atomic_load(&blocked_tid), SIGUSR1);
      continue; /* the handler answers */
    } else if (line[0] == 'h') {
      if (write(handler_gate[1], "x", 1) != 1) return 2;
      continue; /* the handler answers */
    } else if (line[0] == 'f') {
      fflush(stdout);
      pid_t child = fork();
      if (child == 0) child_loop();
      continue; /* the child answers */
    } else if (line[0] == 'e') {
      fflush(stdout);
      pid_t child = fork();
      if (child == 0) {
        execl("/bin/true", "true", (char*)NULL);
        _exit(127);
      }
      int status = 0;
      waitpid(child, &status, 0);
      printf("exec child %d %d\n", (int)child, status);
    } else if (line[0] == 'F' && line[1] == ' ') {
      if (write(child_cmd[1], &line[2], 1) != 1) return 2;
      continue;
    } else if (line[0] == 'i') {
      for (int i = 0; i < 4; ++i) {
        pthread_create(&t, NULL, idle, NULL);
        pthread_detach(t);
      }
      printf("idle\n");
    } else if (line[0] == 'q') {
      break;
    }
    fflush(stdout);
  }
  return 0;
}
