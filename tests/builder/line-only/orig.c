#include <assert.h>
#include <stdio.h>
int checked(int x) { assert(x > 0); return x * 2; }
void where(void) { printf("at line %d\n", __LINE__); }
