// Replaces Parser::parse of tests/programs/thrower.cpp: throws a different exception (through
// patch code, caught by the unpatched caller) and parses with base + 6 (16).
#include <livegraft/patch.h>

#include <stdexcept>
#include <string>

struct Parser {
  int base;
};

static int parse_fixed(Parser* self, const std::string& s) {
  if (s.empty() || s[0] == '-') throw std::out_of_range("patched parser refuses " + s);
  return std::stoi(s, nullptr, self->base + 6);
}

static struct livegraft_func funcs[] = {
    LIVEGRAFT_FUNC("_ZN6Parser5parseERKNSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEE", parse_fixed)};
static struct livegraft_object objects[] = {LIVEGRAFT_OBJECT(LIVEGRAFT_MAIN_EXECUTABLE, nullptr, funcs)};
LIVEGRAFT_PATCH("thrower-fix", 0, objects);
