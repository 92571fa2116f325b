/* The fix makes handle() register itself as the next callback (squid's icpHandleUdp calls
 * Comm::SetSelect(fd, COMM_SELECT_READ, icpHandleUdp, ...) every time). The patch must take
 * the ORIGINAL handle's address ("handle,0"): a pointer into the patch would outlive a revert.
 * -fPIC: the address is loaded from the GOT (R_X86_64_REX_GOTPCRELX against handle). */
typedef int (*callback)(int);
callback next;

int handle(int x) { return x + 1; }

int dispatch(int x) { return next ? next(x) : handle(x); }
