// Target program for tests/unit/unwind_stack_test.cpp.
#include <time.h>
#include <unistd.h>
volatile int stop;
__attribute__((noinline)) int rec(int n) {
  volatile int x = n;
  if (n == 0) {
    write(1, "ready\n", 6);
    while (!stop) { struct timespec ts = {10, 0}; nanosleep(&ts, 0); }
    return 0;
  }
  int r = rec(n - 1);
  return r + x;
}
int main(void) { int r = rec(50); return r + stop; }
