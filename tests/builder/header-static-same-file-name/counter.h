/* A header that defines statics: every file that includes it has its own counter and bump. */
static int counter;
static __attribute__((noipa)) int bump(int by) {
  counter += by;
  return counter;
}
