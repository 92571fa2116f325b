/* The fix makes handle() register itself as the next callback (squid's icpHandleUdp calls
 * Comm::SetSelect(fd, COMM_SELECT_READ, icpHandleUdp, ...) every time): the patch's `lea` of
 * handle would point into the patch, and the program keeps the pointer past a revert. */
typedef int (*callback)(int);
callback next;

int handle(int x) {
  next = handle;
  return x + 2;
}

int dispatch(int x) { return next ? next(x) : handle(x); }
