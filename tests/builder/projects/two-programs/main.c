#include <stdio.h>

int twice(int x);

__attribute__((noinline)) int answer(int i) { return twice(i) + 1; }

int main(int argc, char **argv) {
  (void)argv;
  printf("%d\n", answer(argc));
  return 0;
}
