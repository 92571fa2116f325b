#include "counter.h"
/* Another file named unit.c with the same locals (counter, bump) as the patched one: nothing in
 * the target tells the two apart. */
int other_tick(void) { return bump(1); }
