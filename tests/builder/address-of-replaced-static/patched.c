/* A static handler whose fix registers it, from code and from a new table: both must take the
 * ORIGINAL handle's address, and of the two static handles in the target (other1.c has one),
 * this file's: "handle,2". -fPIC: a `lea` of a local (R_X86_64_PC32) and an R_X86_64_64 in
 * .data.rel.ro. */
typedef int (*callback)(int);
callback next;

static int handle(int x);
static callback const chain[] = {handle, 0};

static __attribute__((noinline)) int handle(int x) {
  next = chain[x & 1] ? chain[x & 1] : handle;
  return x + 2;
}

int dispatch(int x) { return next ? next(x) : handle(x); }
