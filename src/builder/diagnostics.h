// What the passes found wrong (refusals: the patch cannot be made) and worth saying (warnings).
#pragma once

#include <string>
#include <vector>

namespace lg::builder {

struct Diagnostics {
  std::vector<std::string> refusals;  // each names the symbol and the reason
  std::vector<std::string> warnings;
  bool ok() const { return refusals.empty(); }
};

}  // namespace lg::builder
