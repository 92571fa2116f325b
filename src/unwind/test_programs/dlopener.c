// Target program for tests/unit/unwind_stack_test.cpp.
#include <dlfcn.h>
#include <stdio.h>
#include <unistd.h>
volatile int sink;
int main(int argc, char** argv) {
  (void)argc;
  write(1, "ready\n", 6);
  char c;
  if (read(0, &c, 1) != 1) return 2;
  void* h = dlopen(argv[1], RTLD_NOW);
  if (!h) return 1;
  void (*f)(void) = (void (*)(void))dlsym(h, "lib_sleep");
  f();
  return sink;
}
