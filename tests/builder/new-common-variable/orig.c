/* A fix that adds an uninitialised global, compiled with -fcommon (the default before GCC 10,
 * still used by old projects): the new variable is a COMMON symbol, with no section to copy. */
int count_calls(int x) { return x + 1; }
