/* A target that holds privileges its user does not: installed setuid root (the test does that),
 * "keep-saved-root" makes it drop to its real uid but keep saved uid 0 — setresuid(ruid, ruid, 0),
 * as some setuid programs do to regain root later. Given file capabilities it keeps them.
 * "daemon-drop UID" (started by root) drops to UID the way daemons such as squid do: keeps saved
 * uid 0 and makes itself dumpable again (setresuid(UID, UID, 0) cleared the flag).
 * "i" prints "ruid euid suid", "r PATH" prints "readable" or "denied" for open(PATH), "q" quits. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "target_common.h"

int main(int argc, char** argv) {
  if (argc > 1 && !strcmp(argv[1], "keep-saved-root")) {
    uid_t r = getuid();
    if (geteuid() != 0 || r == 0 || setresuid(r, r, 0) != 0) {
      printf("not started setuid root by another user\n");
      return 2;
    }
  }
  if (argc > 2 && !strcmp(argv[1], "daemon-drop")) {
    uid_t u = (uid_t)atoi(argv[2]);
    if (geteuid() != 0 || setresuid(u, u, 0) != 0 || prctl(PR_SET_DUMPABLE, 1) != 0) {
      printf("not started by root\n");
      return 2;
    }
  }
  char line[256];
  target_ready();
  while (fgets(line, sizeof line, stdin)) {
    line[strcspn(line, "\n")] = 0;
    if (line[0] == 'i') {
      uid_t r, e, s;
      getresuid(&r, &e, &s);
      printf("%u %u %u\n", (unsigned)r, (unsigned)e, (unsigned)s);
    } else if (line[0] == 'r' && line[1] == ' ') {
      int fd = open(line + 2, O_RDONLY);
      printf("%s\n", fd >= 0 ? "readable" : "denied");
      if (fd >= 0) close(fd);
    } else if (line[0] == 'q') {
      break;
    }
    fflush(stdout);
  }
  return 0;
}
