/* A recursive global function: with -fPIC gcc calls it through a local alias, depth.localalias,
 * at the same address in the same section. */
int depth(int n) { return n <= 0 ? 0 : 2 + depth(n - 2) + (n & 1 ? depth(n - 1) : 0); }
