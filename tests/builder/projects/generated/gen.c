#include <stdio.h>

int main(void) {
  printf("static const int squares[] = {");
  for (int i = 0; i < 16; ++i) printf("%d,", i * i);
  printf("};\n");
  return 0;
}
