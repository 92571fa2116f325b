// The probes' common main: one answer line per request line on stdin. Each request runs
// probe() in a forked child, so the crash a vulnerability causes is an answer ("crash signal
// 11"), not the end of the probe; the child inherits the parent's code, patched or not.
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void probe(void);

int main(void) {
  char line[256];
  setvbuf(stdout, NULL, _IOLBF, 0);
  while (fgets(line, sizeof line, stdin)) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
      probe();
      fflush(stdout);
      _exit(0);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) < 0) {
      printf("probe error\n");
      continue;
    }
    if (WIFSIGNALED(status)) printf("crash signal %d\n", WTERMSIG(status));
  }
  return 0;
}
