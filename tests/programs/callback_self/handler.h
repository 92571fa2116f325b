typedef int (*callback)(int);
extern callback next_handler;
int handle(int x);
