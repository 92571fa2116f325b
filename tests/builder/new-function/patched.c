__attribute__((noinline)) int validate(int x) { return x < 0 ? 0 : x; }
int compute(int x) { return validate(x) * 2; }
