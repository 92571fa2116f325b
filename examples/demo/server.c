/* A toy access-control service for the livegraft demo. Every 400 ms it handles a request from
 * a user with a clearance level and logs the verdict. It has a security bug: check_access()
 * lets level-3 ("guest") users read secret documents. The fix (fix.c) is applied live. */
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static unsigned long requests_served;   /* live state the fix keeps counting with */

struct request {
  const char *user;
  int level;          /* 1 admin, 2 staff, 3 guest */
};

__attribute__((noinline)) int check_access(const struct request *r) {
  requests_served++;
  return r->level <= 3;   /* BUG: should be r->level <= 2 */
}

int main(void) {
  static const struct request requests[] = {{"alice", 1}, {"bob", 2}, {"mallory", 3}};
  setvbuf(stdout, NULL, _IOLBF, 0);
  printf("server pid %d: serving requests\n", (int)getpid());
  for (unsigned i = 0;; ++i) {
    const struct request *r = &requests[i % 3];
    printf("  request %-4lu %-8s level %d -> %s\n", requests_served + 1, r->user, r->level,
           check_access(r) ? "GRANTED" : "denied");
    struct timespec ts = {0, 400 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
}
