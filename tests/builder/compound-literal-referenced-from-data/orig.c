// Compound literals referenced only from data (as haproxy's initcall records reference theirs):
// GCC makes each a local object, __compound_literal.N, that no function uses. They are the
// original's, correlated through the data that points at them: no "assuming it is new".
struct entry {
  const char* name;
  int weight;
};
struct entry* registered[] = {&(struct entry){"first", 1}, &(struct entry){"second", 2}};

int weigh(int x) { return x * registered[0]->weight + registered[1]->weight; }
