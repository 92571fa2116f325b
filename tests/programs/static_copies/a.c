#include "counter.h"
int a_step(void) {
  bump(1);
  return counter;
}
