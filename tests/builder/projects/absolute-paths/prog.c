#include <stdio.h>
#include <unistd.h>

__attribute__((noinline)) int answer(int i) { return i * 2; }

int main(void) {
  for (int i = 0;; ++i) {
    printf("%d\n", answer(i));
    fflush(stdout);
    sleep(1);
  }
}
