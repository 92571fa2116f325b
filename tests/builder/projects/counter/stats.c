/* A tiny stats module with its own state, used by main.c. */
#include <stdio.h>

static long total;
static int samples;

static int clamp(int v) { return v > 100 ? 100 : v; }

void stats_add(int v) {
  total += clamp(v);
  samples++;
}

int stats_average(void) {
  return samples ? (int)(total / samples) : 0;
}
