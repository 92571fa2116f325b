/* Shared by the e2e target programs: a line-oriented command loop on stdin/stdout, so a test
 * can ask the running process to do something and read the answer. */
#ifndef TARGET_COMMON_H
#define TARGET_COMMON_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline void target_ready(void) {
  printf("ready\n");
  fflush(stdout);
}
#endif
