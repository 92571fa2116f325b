// handle() catches what check() throws; the original check() cannot throw.
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
