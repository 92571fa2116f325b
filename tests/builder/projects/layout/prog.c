#include <stdio.h>
#include <unistd.h>

struct request {
  int id;
  short flags;
};

__attribute__((noinline)) int handle(struct request* r) { return r->id + r->flags; }

__attribute__((noinline)) int serve(int i) {
  struct request r = {i, (short)(i & 7)};
  return handle(&r);
}

int main(void) {
  for (int i = 0;; ++i) {
    printf("%d\n", serve(i));
    fflush(stdout);
    sleep(1);
  }
}
