// Target for lg_process tests (red zone hazard): the main thread loops in asm that keeps
// values at -0x8, -0x78 and -0x80(%rsp) — inside the 128-byte red zone — and checks they
// survive. Prints "range BEGIN END" (the loop's code), then "alive N" now and then, and
// "clobbered" (then exits 3) if anything below rsp changed.
#include <stdio.h>
#include <unistd.h>

extern char redzone_loop_begin[], redzone_loop_end[];

__attribute__((noinline)) static int check_red_zone(void) {
  int ok;
  __asm__ volatile(
      "movq $0x1111, -0x8(%%rsp)\n"
      "movq $0x2222, -0x78(%%rsp)\n"
      "movq $0x3333, -0x80(%%rsp)\n"
      "mov $2000000, %%ecx\n"
      ".globl redzone_loop_begin\n"
      "redzone_loop_begin:\n"
      "1: cmpq $0x1111, -0x8(%%rsp)\n"
      "jne 2f\n"
      "cmpq $0x2222, -0x78(%%rsp)\n"
      "jne 2f\n"
      "cmpq $0x3333, -0x80(%%rsp)\n"
      "jne 2f\n"
      "dec %%ecx\n"
      "jnz 1b\n"
      ".globl redzone_loop_end\n"
      "redzone_loop_end:\n"
      "mov $1, %0\n"
      "jmp 3f\n"
      "2: mov $0, %0\n"
      "3:\n"
      : "=r"(ok)
      :
      : "rcx", "memory", "cc");
  return ok;
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  printf("range %p %p\n", (void*)redzone_loop_begin, (void*)redzone_loop_end);
  for (long n = 0;; ++n) {
    if (!check_red_zone()) {
      printf("clobbered\n");
      _exit(3);
    }
    if (n % 64 == 0) printf("alive %ld\n", n);
  }
}
