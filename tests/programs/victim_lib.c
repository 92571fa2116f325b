/* libvictim.so, the shared library of tests/programs/victim.c. victim_value() is what the
 * patch replaces; the VICTIM_V2 build is "the upgrade" that replaces the file on disk.
 * victim_errno is an errno-style global: the executable never refers to it, so it has no copy
 * of it and it lives in the library, far from the executable. */
static int offset = 1; /* static state the patch must keep using */
int victim_errno;

#ifdef VICTIM_V2
__attribute__((noinline)) int victim_value(int x) { return x * 1000 + offset; }
#else
__attribute__((noinline)) int victim_value(int x) {
  if (x < 0) victim_errno = -x;
  return x * 10 + offset;
}
#endif
void victim_set_offset(int v) { offset = v; }
int* victim_errno_location(void) { return &victim_errno; }
int (*victim_hook)(int) = victim_value; /* a library's function pointer */
