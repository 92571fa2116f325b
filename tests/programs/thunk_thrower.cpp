// Entry thunk + C++ exceptions. Built with -fnon-call-exceptions: check() is a leaf that touches
// only %eax, yet it may throw (its load may trap), so handle()'s call to it keeps a landing pad,
// and -fipa-ra lets handle() keep live values in other call-clobbered registers across the call.
// A replacement that throws must be entered through an entry thunk (it clobbers those
// registers) and its exception must unwind through the thunk's frame to handle()'s catch.
// "r N" prints handle(request N); "q" quits.
#include <cstdio>
#include <iostream>
#include <stdexcept>
#include <string>

struct Request {
  const char* user;
  int level;
};

__attribute__((noinline)) int check(const Request* r) { return r->level <= 3; }

__attribute__((noinline)) std::string handle(const Request* r) {
  try {
    int ok = check(r);
    return std::string(r->user) + " " + std::to_string(r->level) + (ok ? " granted" : " denied");
  } catch (const std::exception& e) {
    return std::string("caught ") + e.what() + " for " + r->user;
  }
}

int main() {
  static const Request reqs[] = {{"alice", 1}, {"bob", 2}, {"mallory", 3}};
  std::string line;
  std::cout << "ready" << std::endl;
  while (std::getline(std::cin, line)) {
    int n = line.size() > 2 ? line[2] - '0' : 0;
    if (line.rfind("r ", 0) == 0 && n >= 1 && n <= 3) std::cout << handle(&reqs[n - 1]) << std::endl;
    else if (line == "q") break;
  }
  return 0;
}
