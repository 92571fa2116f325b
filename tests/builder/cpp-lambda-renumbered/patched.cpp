// The fix adds a lambda before the other two: it becomes #1, and the unchanged ones #2 and #3.
// Paired by name, the running program's lambda #1 (x * k * 2) would be replaced by the new
// lambda's code (-x), and #2 (x + k) by x * k * 2: a std::function made before the patch would
// compute something else on its own captures. Paired by code, the old lambdas keep theirs and
// only make() is replaced; the new lambda's thunks are NEW.
#include <functional>
std::function<int(int)> make(int k, bool twice) {
  if (k < 0) return [](int x) { return -x; };
  if (twice) return [k](int x) { return x * k * 2; };
  return [k](int x) { return x + k; };
}
