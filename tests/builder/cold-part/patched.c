#include <stdio.h>
#include <stdlib.h>
extern void report(const char *, int) __attribute__((cold));
int parse(const char *s, int n) {
  int total = 0;
  for (int i = 0; i < n; i++) {
    if (s[i] == 0) {
      report("short", i);
      fprintf(stderr, "parse: input ends early, at byte %d of %d\n", i, n);
      total = -1;
      continue;
    }
    total += s[i] * 3;
  }
  return total;
}
static int work(int *p, int n) { if (!p) return -1; int s = 0; for (int i = 0; i < n; i++) s += p[i] * p[i] + (s >> 3); for (int i = 0; i < n; i++) s ^= p[i] << (i & 3); return s; }
int api(int *p, int n) { return work(p, n) + work(p, n/2); }
