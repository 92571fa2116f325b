// The fix stops fixed() from using the helper: label() has one caller left, and GCC inlines a
// static function called once into that caller. untouched() is not edited, but its code now
// holds label()'s: it is in the patch, and the report says it inlines label.
#include <string>
static std::string label(const std::string& name, int n) {
  std::string s = "[" + name + "]";
  for (int i = 0; i < n; ++i) s += (i % 3 == 0) ? "-" : "+";
  return s + std::to_string(n);
}
std::string untouched(int n) { return label("untouched", n); }
std::string fixed(int n) { return "fixed:" + std::to_string(n); }
