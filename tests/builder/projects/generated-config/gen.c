#include <stdio.h>

int main(void) {
  printf("#define FACTOR %d\n", 3);
  return 0;
}
