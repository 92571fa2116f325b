#include <stdio.h>

__attribute__((noinline)) int limit(int x) { return x > 100 ? 100 : x; }

int main(int argc, char** argv) {
  printf("%d\n", limit(argc * 60));
  (void)argv;
  return 0;
}
