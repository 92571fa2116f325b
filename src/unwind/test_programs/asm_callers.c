// Target program for tests/unit/unwind_stack_test.cpp.
// Hand-written assembly calling back into C: "nocfi" has no CFI at all; "badcfi" has CFI that
// claims a CFA equal to its callee's (as a corrupt or wrong FDE would), which must not be followed.
#include <string.h>
#include <time.h>
#include <unistd.h>
volatile int stop;
__attribute__((noinline)) void do_sleep(void) {
  write(1, "ready\n", 6);
  while (!stop) { struct timespec ts = {10, 0}; nanosleep(&ts, 0); }
}
__asm__(".text\n"
        ".globl nocfi_caller\n.type nocfi_caller,@function\n"
        "nocfi_caller:\n sub $8, %rsp\n call do_sleep\n add $8, %rsp\n ret\n"
        ".size nocfi_caller, .-nocfi_caller\n"
        ".globl badcfi_caller\n.type badcfi_caller,@function\n"
        "badcfi_caller:\n .cfi_startproc\n sub $8, %rsp\n .cfi_def_cfa_offset 0\n call do_sleep\n"
        " add $8, %rsp\n ret\n .cfi_endproc\n"
        ".size badcfi_caller, .-badcfi_caller\n");
void nocfi_caller(void);
void badcfi_caller(void);
int main(int argc, char** argv) {
  if (argc > 1 && strcmp(argv[1], "badcfi") == 0) badcfi_caller(); else nocfi_caller();
  return stop;
}
