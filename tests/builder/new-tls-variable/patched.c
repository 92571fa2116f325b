__thread int depth;
int compute(int x) { depth++; return x * 2; }
