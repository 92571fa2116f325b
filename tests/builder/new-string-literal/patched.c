#include <stdio.h>
void greet(const char *n) { if (!n) { puts("greet: no name given"); return; } printf("hello %s\n", n); }
void bye(void) { puts("bye"); }
