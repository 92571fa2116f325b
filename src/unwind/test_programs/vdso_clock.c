// Target program for tests/unit/unwind_stack_test.cpp.
// A busy loop around clock_gettime, which runs in the vDSO without entering the kernel.
#include <time.h>
#include <unistd.h>
volatile int stop;
volatile long sink;
__attribute__((noinline)) void poll_clock(void) {
  struct timespec ts;
  while (!stop) { clock_gettime(CLOCK_MONOTONIC, &ts); sink += ts.tv_nsec; }
}
int main(void) { write(1, "ready\n", 6); poll_clock(); return (int)sink; }
