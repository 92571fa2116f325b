/* The -fipa-ra hazard: check() is a leaf that touches only %eax, so GCC lets main() keep a live
 * value in another call-clobbered register across the call. "r N" runs a request of level N and
 * prints the verdict; "m N" and "v N" do the same through many() (an argument on the stack) and
 * vcheck() (variadic), which an entry thunk cannot wrap; "q" quits. */
#include <stdarg.h>

#include "target_common.h"

struct request {
  const char* user;
  int level;
};

__attribute__((noinline)) int check(const struct request* r) { return r->level <= 3; }
__attribute__((noinline)) int many(const struct request* r, int a, int b, int c, int d, int e, int f) {
  return r->level + a + b + c + d + e + f <= 9;
}
__attribute__((noinline)) int vcheck(const struct request* r, ...) {
  va_list ap;
  va_start(ap, r);
  int x = va_arg(ap, int);
  va_end(ap);
  return r->level + x <= 3;
}

int main(void) {
  static const struct request reqs[] = {{"alice", 1}, {"bob", 2}, {"mallory", 3}};
  char line[64];
  target_ready();
  while (fgets(line, sizeof line, stdin)) {
    int n = 0;
    if (sscanf(line, "r %d", &n) == 1 && n >= 1 && n <= 3) {
      const struct request* r = &reqs[n - 1];
      int ok = check(r);
      printf("%s %d %s\n", r->user, r->level, ok ? "granted" : "denied");
    } else if (sscanf(line, "m %d", &n) == 1 && n >= 1 && n <= 3) {
      const struct request* r = &reqs[n - 1];
      int ok = many(r, 1, 1, 1, 1, 1, 1);
      printf("%s %d %s\n", r->user, r->level, ok ? "granted" : "denied");
    } else if (sscanf(line, "v %d", &n) == 1 && n >= 1 && n <= 3) {
      const struct request* r = &reqs[n - 1];
      int ok = vcheck(r, 0);
      printf("%s %d %s\n", r->user, r->level, ok ? "granted" : "denied");
    } else if (line[0] == 'q') {
      break;
    }
    fflush(stdout);
  }
  return 0;
}
