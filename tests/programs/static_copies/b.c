#include "counter.h"
int b_step(void) {
  bump(10);
  return counter;
}
