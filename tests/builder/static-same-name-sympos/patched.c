static __attribute__((noinline)) int helper(int x) { return x ^ 0x77; }
int api_a(int x) { return helper(x) * 2; }
