// Target program for tests/unit/unwind_stack_test.cpp.
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
volatile int sink;
__attribute__((noinline)) void call_it(void (*fn)(void)) { fn(); sink++; }
int main(void) {
  unsigned char* p = mmap(0, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return 1;
  p[0] = 0xeb; p[1] = 0xfe;  /* jmp . */
  write(1, "ready\n", 6);
  call_it((void (*)(void))p);
  return sink;
}
