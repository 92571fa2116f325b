// The fix adds a static local: it is new (no counterpart in the original), and the builder says so.
int next_id(void) {
  static int counter;
  return ++counter;
}
