/* static_copies: two files with their own copy of one header's statics (counter.h). Each line
 * on stdin steps both (a.c's copy by 1, b.c's by 10) and prints "a=A b=B", their counters.
 * tests/e2e/static_copies_test.cpp patches b.c's b_step to step by 1000: bound to b.c's copy,
 * the patch leaves a.c's counter counting by 1. */
#include <stdio.h>

int a_step(void);
int b_step(void);

int main(void) {
  char line[64];
  setvbuf(stdout, NULL, _IOLBF, 0);
  printf("ready\n");
  while (fgets(line, sizeof line, stdin)) {
    int a = a_step();
    int b = b_step();
    printf("a=%d b=%d\n", a, b);
  }
  return 0;
}
