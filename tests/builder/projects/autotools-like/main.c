#include <stdio.h>
#include <unistd.h>

int util_value(int i);

int main(void) {
  for (int i = 0;; ++i) {
    printf("%d\n", util_value(i));
    fflush(stdout);
    sleep(1);
  }
}
