int next_id(void) { static int counter; counter += 2; return counter; }
int peek(void) { return 42; }
