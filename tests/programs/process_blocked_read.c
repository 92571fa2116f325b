// Target for lg_process tests (syscall restart hazard): prints "ready", then blocks in read()
// on stdin and prints "got N TEXT" or "error ERRNO-TEXT". Then idles, printing "idle".
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  printf("ready\n");
  char buf[256];
  ssize_t n = read(0, buf, sizeof buf - 1);
  if (n < 0) {
    printf("error %s\n", strerror(errno));
  } else {
    buf[n] = 0;
    if (n > 0 && buf[n - 1] == '\n') buf[n - 1] = 0;
    printf("got %zd %s\n", n, buf);
  }
  for (;;) {
    printf("idle\n");
    sleep(1);
  }
}
