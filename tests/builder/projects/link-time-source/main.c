#include <stdio.h>
#include <unistd.h>

__attribute__((noinline)) int scaled(int x) { return x * 3; }

int main(void) {
  for (int i = 0;; ++i) {
    printf("%d\n", scaled(i));
    fflush(stdout);
    sleep(1);
  }
}
