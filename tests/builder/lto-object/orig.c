/* Compiled with -flto: the object holds GCC's intermediate code, not machine code. */
int scale(int x) { return x * 3; }
