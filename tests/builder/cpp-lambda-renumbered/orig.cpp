// Two lambdas in make(): GCC numbers them in source order, {lambda(int)#1} and #2, and so are
// the std::function thunks made for them (_M_invoke, _M_manager).
#include <functional>
std::function<int(int)> make(int k, bool twice) {
  if (twice) return [k](int x) { return x * k * 2; };
  return [k](int x) { return x + k; };
}
