static inline int scale(int x) { return x * 3 + 1; }
int f1(int x) { return scale(x) + 1; }
int f2(int x) { return scale(x) - 1; }
int f3(int x) { return x - 7; }
