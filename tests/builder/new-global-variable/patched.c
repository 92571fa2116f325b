int call_count;
int compute(int x) { call_count++; return x * 2; }
