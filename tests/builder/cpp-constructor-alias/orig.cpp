// A constructor whose complete-object (C1) and base-object (C2) versions are the same code: GCC
// emits C1 as an alias of C2, one section for both names.
struct Counter {
  Counter(int start);
  int value;
};
Counter::Counter(int start) : value(start + 1) {}
