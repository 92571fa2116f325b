/* tests/programs/calc.c with a fork: "c N" prints compute(N), "d N" prints depth(N), "m N" sets
 * the static scale (so it stays a variable calc_fix can use), "f" forks a
 * child that waits in pause() until killed (by pid) and prints "child PID US", US being how long
 * fork() took in the parent (the agent's atfork handler may wait for a running request). */
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "calc.h"

static long now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000L + ts.tv_nsec / 1000;
}

int main(void) {
  char line[256];
  target_ready();
  while (fgets(line, sizeof line, stdin)) {
    if (calc_command(line)) {
      /* answered */
    } else if (line[0] == 'f') {
      long start = now_us();
      pid_t child = fork();
      if (child == 0) {
        for (;;) pause();
      }
      printf("child %d %ld\n", (int)child, now_us() - start);
    } else if (line[0] == 'q') break;
    else printf("?\n");
    fflush(stdout);
  }
  return 0;
}
