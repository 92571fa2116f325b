/* The fix registers a NEW function as the next callback: it has no original to bind to, so the
 * patch is flagged LIVEGRAFT_PATCH_KEEP_CODE (its code stays mapped after a revert, where the
 * program may still hold the pointer). A call of another new function keeps nothing. */
typedef int (*callback)(int);
callback next;

__attribute__((noinline)) int checked(int x) { return x < 0 ? 0 : x + 2; }
__attribute__((noinline)) int clamp(int x) { return x > 100 ? 100 : x; }

int handle(int x) {
  next = checked;
  return clamp(x) + 1;
}

int dispatch(int x) { return next ? next(x) : handle(x); }
