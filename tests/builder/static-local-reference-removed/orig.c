int next_id(void) { static int counter; return ++counter; }
