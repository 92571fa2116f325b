static __attribute__((noinline)) int helper(int x) { return x ^ 0x11; }
int api_b(int x) { return helper(x) * 3; }
