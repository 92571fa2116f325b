// Target program for tests/unit/unwind_stack_test.cpp.
#include <time.h>
#include <unistd.h>
volatile int sink, stop;
__attribute__((noinline)) void f3(void) {
  write(1, "ready\n", 6);
  while (!stop) { struct timespec ts = {10, 0}; nanosleep(&ts, 0); sink++; }
}
__attribute__((noinline)) void f2(void) { f3(); sink++; }
__attribute__((noinline)) void f1(void) { f2(); sink++; }
int main(void) { f1(); return sink; }
