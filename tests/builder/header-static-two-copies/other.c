#include "counter.h"
/* Linked first: its counter and bump are definitions #1 of those names in the target. */
int other_tick(void) { return bump(1); }
