/* Another file's static of the same name: definition #1 of handle in the target. */
static __attribute__((noinline)) int handle(int x) { return x * 3; }
int other_entry(int x) { return handle(x); }
