// Replaces Parser::parse of tests/programs/pt_thrower.cpp: throws std::out_of_range (through
// patch code, caught by the unpatched caller), parses with base + 6 (16), and blocks on
// "block" like the old one before throwing.
#include <errno.h>
#include <unistd.h>

#include <livegraft/patch.h>

#include <stdexcept>
#include <string>

struct Parser {
  int base;
};

extern int gate[2];

static int parse_fixed(Parser* self, const std::string& s) {
  if (s == "block") {
    char c;
    while (read(gate[0], &c, 1) < 0 && errno == EINTR) {
    }
    throw std::out_of_range("new parser released");
  }
  if (s.empty() || s[0] == '-') throw std::out_of_range("patched parser refuses " + s);
  return std::stoi(s, nullptr, self->base + 6);
}

static struct livegraft_func funcs[] = {
    LIVEGRAFT_FUNC("_ZN6Parser5parseERKNSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEE", parse_fixed)};
static struct livegraft_object objects[] = {LIVEGRAFT_OBJECT(LIVEGRAFT_MAIN_EXECUTABLE, nullptr, funcs)};
LIVEGRAFT_PATCH("pt-thrower-fix", 0, objects);
