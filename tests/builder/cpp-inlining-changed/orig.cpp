// A static helper with two callers: GCC keeps it out of line and both call it.
#include <string>
static std::string label(const std::string& name, int n) {
  std::string s = "[" + name + "]";
  for (int i = 0; i < n; ++i) s += (i % 3 == 0) ? "-" : "+";
  return s + std::to_string(n);
}
std::string untouched(int n) { return label("untouched", n); }
std::string fixed(int n) { return label("fixed", n); }
