/* Single-threaded target: "c N" prints compute(N), "d N" prints depth(N) (recursive), "m N" sets
 * the static scale, "s" prints the static call counter, "q" quits. */
#include "calc.h"

int main(void) {
  char line[256];
  target_ready();
  while (fgets(line, sizeof line, stdin)) {
    if (calc_command(line)) {
      /* answered */
    } else if (line[0] == 's') {
      printf("%d\n", calls);
    } else if (line[0] == 'q') {
      break;
    } else {
      printf("?\n");
    }
    fflush(stdout);
  }
  return 0;
}
