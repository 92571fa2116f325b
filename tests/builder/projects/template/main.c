#include <stdio.h>
#include <unistd.h>

#include "config.h"
#ifndef FACTOR
#define FACTOR 1
#endif

__attribute__((noinline)) int scaled(int x) { return x * FACTOR; }

int main(void) {
  for (int i = 0;; ++i) {
    printf("%d\n", scaled(i));
    fflush(stdout);
    sleep(1);
  }
}
