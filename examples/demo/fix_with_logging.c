/* The same fix, logging each refusal with fprintf(). main() keeps a pointer in %rdx across its
 * call to the leaf check_access() (GCC -fipa-ra), and fprintf() would clobber it: livegraft
 * enters this replacement through an entry thunk that saves and restores such registers
 * (`livegraft --json status PID` shows its address as entry_thunk). Applying it without one
 * crashed the server in an early version. */
#include <livegraft/patch.h>
#include <stdio.h>

struct request {
  const char *user;
  int level;
};

extern unsigned long requests_served;

static int check_access_fixed(const struct request *r) {
  requests_served++;
  if (r->level > 2) fprintf(stderr, "  [patched] refusing %s\n", r->user);
  return r->level <= 2;
}

static struct livegraft_func funcs[] = {LIVEGRAFT_FUNC("check_access", check_access_fixed)};
static struct livegraft_object objects[] = {LIVEGRAFT_OBJECT(LIVEGRAFT_MAIN_EXECUTABLE, NULL, funcs)};
LIVEGRAFT_PATCH("fix-guest-access-logging", 0, objects);
