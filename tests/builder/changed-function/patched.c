int compute(int x) { return x * 3; }
int other(int y) { return y + 1; }
