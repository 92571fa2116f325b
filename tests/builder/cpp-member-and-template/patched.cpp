struct Counter { int base; int add(int x); };
int Counter::add(int x) { return base + x + 1; }
template <class T> T twice(T x) { return x * 2 + 1; }
template int twice<int>(int);
int untouched(int x) { return x + 5; }
