#include <stdio.h>
#include <unistd.h>

void stats_add(int v);
int stats_average(void);

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  for (int i = 0; i < 600; i++) {
    stats_add(i % 7 == 0 ? 1000 : 10);
    printf("average=%d\n", stats_average());
    usleep(20000);
  }
  return 0;
}
