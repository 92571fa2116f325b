// Target program for tests/unit/unwind_stack_test.cpp.
// dlopen()s a library after "ready" was read, then blocks inside it.
#include <time.h>
volatile int stop;
__attribute__((noinline)) void lib_sleep(void) {
  while (!stop) { struct timespec ts = {10, 0}; nanosleep(&ts, 0); }
}
