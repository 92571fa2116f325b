// C++ target for exceptions during a per-thread transition (tests/e2e/per_thread_exception_test.cpp):
// Parser::parse throws std::invalid_argument on bad input; the unpatched caller handle()
// catches it. parse("block") blocks inside parse (reading a pipe) until released, then throws.
//   "p TEXT"  prints handle(TEXT);
//   "b"       starts a thread that prints "thread: " + handle("block");
//   "r"       releases it;
//   "q"       quits.
#include <errno.h>
#include <unistd.h>

#include <iostream>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

int gate[2];
static std::mutex out_mu;

struct Parser {
  int base = 10;
  __attribute__((noinline)) int parse(const std::string& s);
};

int Parser::parse(const std::string& s) {
  if (s == "block") {
    char c;
    while (read(gate[0], &c, 1) < 0 && errno == EINTR) {
    }
    throw std::invalid_argument("old parser released");
  }
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
  if (pipe(gate) != 0) return 1;
  Parser p;
  std::string line;
  std::cout << "ready" << std::endl;
  while (std::getline(std::cin, line)) {
    std::lock_guard lock(out_mu);
    if (line.rfind("p ", 0) == 0) {
      std::cout << handle(p, line.substr(2)) << std::endl;
    } else if (line == "b") {
      std::thread([&p] {
        std::string r = handle(p, "block");
        std::lock_guard lock(out_mu);
        std::cout << "thread: " << r << std::endl;
      }).detach();
      std::cout << "started" << std::endl;
    } else if (line == "r") {
      if (write(gate[1], "x", 1) != 1) return 2;
    } else if (line == "q") {
      break;
    }
  }
  return 0;
}
