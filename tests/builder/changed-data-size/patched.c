int table[5] = {1, 2, 3, 4, 5};
int get(int i) { return table[i % 5]; }
