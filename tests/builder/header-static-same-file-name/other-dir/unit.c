#include "counter.h"
/* Another file named unit.c (in another directory), linked first, with a local of its own:
 * its run of locals in the target's .symtab is not the patched unit.c's. */
static int ticks_here;
int other_tick(void) { ++ticks_here; return bump(ticks_here); }
