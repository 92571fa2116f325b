// Pass 5 (report only): why each CHANGED function is in the patch. A function is CHANGED when
// its machine code or relocations differ (compare.h), and in a large unit that often is not
// the fix's own lines: GCC's inliner decides per unit (a static function that lost a caller is
// inlined into the callers it has left, a unit-wide growth budget moves), so functions the fix
// did not touch can get different code. Those are true changes and stay in the patch (their code
// differs: leaving the old one would be a guess); the report says what differs, so a person can
// see the patch is not bigger than the fix for no reason:
//  - from the DWARF of both objects (when built with -g): the functions inlined into it that the
//    original did not inline ("inlines X (the original calls it)") and the reverse, and inlined
//    functions whose own out-of-line copy the fix changed ("inlines X, which changed");
//  - from the relocations: callees it calls that the original did not, and the reverse;
//  - otherwise the first differing byte or relocation, and the size.
// Never fails: without DWARF, only the relocation and byte evidence is given.
#pragma once

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "builder/object.h"

namespace lg::builder {

struct InlineInfo;

class Explainer {
 public:
  // Reads the DWARF of both objects once (no DWARF: relocation and byte evidence only). Run
  // after compare: "which changed" reads the statuses.
  Explainer(const Object& orig, const Object& patched);
  ~Explainer();
  Explainer(const Explainer&) = delete;
  Explainer& operator=(const Explainer&) = delete;

  // The reasons the CHANGED function `g` of the patched object (its twin: the original) is in
  // the patch, one phrase each to follow "because it", most telling first.
  std::vector<std::string> reasons(const Symbol& g) const;

 private:
  const Object& orig_;
  const Object& patched_;
  std::set<std::string> changed_;  // readable names of the patched object's CHANGED functions
  std::unique_ptr<InlineInfo> orig_inlines_;  // null: no DWARF (then both are null)
  std::unique_ptr<InlineInfo> patched_inlines_;
};

// "std::string::compare" for "_ZNKSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEE7compareERKS4_.isra.0":
// demangled, without the parameter list and GCC's clone suffixes; C names as they are.
std::string readable_name(const std::string& symbol);

}  // namespace lg::builder
