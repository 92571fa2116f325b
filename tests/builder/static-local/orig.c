int next_id(void) { static int counter; return ++counter; }
int peek(void) { return 42; }
