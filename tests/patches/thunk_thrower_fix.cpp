// Replaces check() of tests/programs/thunk_thrower.cpp with one that throws for level > 2: it
// clobbers registers the original never touched (the throw calls into libstdc++), so it runs
// behind an entry thunk, and its exception unwinds through the thunk to the unpatched caller.
#include <livegraft/patch.h>

#include <stdexcept>
#include <string>

struct Request {
  const char* user;
  int level;
};

static int check_fixed(const Request* r) {
  if (r->level > 2) throw std::invalid_argument(std::string("level ") + std::to_string(r->level) + " refused");
  return 1;
}

static struct livegraft_func funcs[] = {LIVEGRAFT_FUNC("_Z5checkPK7Request", check_fixed)};
static struct livegraft_object objects[] = {LIVEGRAFT_OBJECT(LIVEGRAFT_MAIN_EXECUTABLE, nullptr, funcs)};
LIVEGRAFT_PATCH("thunk-thrower-fix", 0, objects);
