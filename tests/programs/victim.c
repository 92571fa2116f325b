/* Uses libvictim.so: "v N" prints victim_value(N), "e N" prints describe(N), "o N" sets the
 * library's offset, "q" quits. The e2e tests delete or replace the library file after start (a
 * package upgrade) and patch describe() with code reading the library's victim_errno. */
#include "target_common.h"

int victim_value(int x);
void victim_set_offset(int v);

__attribute__((noinline)) int describe(int n) { return victim_value(n); }

int main(void) {
  char line[64];
  target_ready();
  while (fgets(line, sizeof line, stdin)) {
    int n = 0;
    if (sscanf(line, "v %d", &n) == 1) printf("%d\n", victim_value(n));
    else if (sscanf(line, "e %d", &n) == 1) printf("%d\n", describe(n));
    else if (sscanf(line, "o %d", &n) == 1) victim_set_offset(n), printf("ok\n");
    else if (line[0] == 'q') break;
    fflush(stdout);
  }
  return 0;
}
