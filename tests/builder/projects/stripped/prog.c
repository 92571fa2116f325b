#include <stdio.h>
#include <stdlib.h>

// Static: not in .dynsym, so only a debug file names it in the stripped binary.
static __attribute__((noinline)) int checked_length(const char* s) {
  int n = 0;
  while (s[n]) ++n;
  return n;
}

int main(int argc, char** argv) {
  printf("%d\n", checked_length(argc > 1 ? argv[1] : "four"));
  return 0;
}
