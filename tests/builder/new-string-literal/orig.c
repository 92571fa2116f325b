#include <stdio.h>
void greet(const char *n) { printf("hello %s\n", n); }
void bye(void) { puts("bye"); }
