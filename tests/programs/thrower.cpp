// C++ target: Parser::parse throws std::invalid_argument on bad input; the unpatched caller
// handle() catches it. "p TEXT" prints handle(TEXT); "q" quits.
#include <cstdio>
#include <iostream>
#include <stdexcept>
#include <string>

struct Parser {
  int base = 10;
  __attribute__((noinline)) int parse(const std::string& s);
};

int Parser::parse(const std::string& s) {
  if (s.empty() || s[0] == '-') throw std::invalid_argument("negative or empty: " + s);
  return std::stoi(s, nullptr, base);
}

__attribute__((noinline)) std::string handle(Parser& p, const std::string& s) {
  try {
    return "value " + std::to_string(p.parse(s));
  } catch (const std::exception& e) {
    return std::string("caught ") + e.what();
  }
}

int main() {
  Parser p;
  std::string line;
  std::cout << "ready" << std::endl;
  while (std::getline(std::cin, line)) {
    if (line.rfind("p ", 0) == 0) std::cout << handle(p, line.substr(2)) << std::endl;
    else if (line == "q") break;
  }
  return 0;
}
