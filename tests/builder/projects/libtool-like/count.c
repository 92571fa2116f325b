static int calls;

#ifdef PIC
#define STEP 1
#else
#define STEP 100
#endif

int count_next(void) {
  calls += STEP;
  return calls;
}
