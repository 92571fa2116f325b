/* A program that switches stacks by itself, with none of the primitives livegraft detects
 * (no swapcontext, no coroutine library): outer() runs wait_gate() on a private stack whose
 * entry ends the CFI chain, as a coroutine's entry does. A thread parked there unwinds
 * completely — read, wait_gate, run_on_stack — and its own stack, where the old outer()
 * waits to call inner(), is out of sight. Same outer()/inner() as pt_pair.c (110 old, 220 new,
 * 120 or 210 mixed), patched by tests/patches/pt_pair_fix.c.
 *   "b"  start a thread parked in outer(1) on the private stack ("started")
 *   "r"  release it; it prints "done V"
 *   "c"  print outer(0)
 *   "q"  quit */
#include <sys/mman.h>

#define PT_OWN_OUTER
#include "pt_pair.h"

int gate[2]; /* the patch's outer() reads it too */

/* run_on_stack(fn, top): calls fn() with rsp = top, back on the caller's stack afterwards. */
void run_on_stack(void (*fn)(void), void* top);
__asm__(
    "  .text\n"
    "  .globl run_on_stack\n"
    "  .type run_on_stack, @function\n"
    "run_on_stack:\n"
    "  .cfi_startproc\n"
    "  push %rbx\n"
    "  .cfi_def_cfa_offset 16\n"
    "  .cfi_offset %rbx, -16\n"
    "  mov %rsp, %rbx\n"
    "  mov %rsi, %rsp\n"
    "  .cfi_undefined rip\n" /* the walk ends here, as at a coroutine's entry */
    "  call *%rdi\n"
    "  mov %rbx, %rsp\n"
    "  .cfi_restore rip\n"
    "  pop %rbx\n"
    "  .cfi_def_cfa_offset 8\n"
    "  .cfi_restore rbx\n"
    "  ret\n"
    "  .cfi_endproc\n"
    "  .size run_on_stack, .-run_on_stack\n");

static void wait_gate(void) {
  char c;
  while (read(gate[0], &c, 1) < 0 && errno == EINTR) {
  }
}

static char* private_stack;

__attribute__((noipa)) int inner(void) { return 10; }

__attribute__((noipa)) int outer(int block) {
  if (block) run_on_stack(wait_gate, private_stack + (256 << 10) - 64);
  return inner() + 100;
}

int main(void) {
  if (pipe(gate) != 0) return 1;
  private_stack = mmap(NULL, 256 << 10, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (private_stack == MAP_FAILED) return 1;
  pt_command_loop(NULL);
  return 0;
}
