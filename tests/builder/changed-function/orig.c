int compute(int x) { return x * 2; }
int other(int y) { return y + 1; }
