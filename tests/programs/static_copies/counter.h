/* A header that defines statics: each file that includes it (a.c, b.c) has its own counter and
 * bump, two definitions of each name in the program (a.c's first: the link order). */
static int counter;
static __attribute__((noipa)) void bump(int by) { counter += by; }
