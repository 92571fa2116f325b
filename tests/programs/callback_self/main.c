/* "x": runs the registered callback (handle() at first) on 41 and prints its answer and where
 * the callback it left registered points: "original" when it is the program's own handle(),
 * "elsewhere" otherwise (into a patch). "q" quits. */
#include <stdio.h>

#include "handler.h"

int main(void) {
  char line[64];
  printf("ready\n");
  fflush(stdout);
  while (fgets(line, sizeof line, stdin)) {
    if (line[0] == 'x') {
      callback f = next_handler ? next_handler : handle;
      int v = f(41);
      printf("%d %s\n", v, next_handler == handle ? "original" : "elsewhere");
    } else if (line[0] == 'q') {
      break;
    }
    fflush(stdout);
  }
  return 0;
}
