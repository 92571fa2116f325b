#include "counter.h"
/* The fix uses this file's copies (definitions #2): the patch must name them by position. */
int unit_tick(int x) {
  if (counter > 1000) return counter;
  return bump(x > 0 ? x : 0);
}
int unit_read(void) { return counter; }
