// The part of a relocatable object's .eh_frame that describes a set of text sections: every
// FDE whose pc_begin relocation points into one of them, with the CIEs they use. The patch
// object carries it so that unwinders (the controller's stack check, C++ exceptions) can walk
// through patch code. A zero terminator closes the table (what __register_frame expects).
#pragma once

#include <optional>
#include <set>
#include <vector>

#include "builder/object.h"
#include "common/result.h"

namespace lg::builder {

struct EhFrameSubset {
  std::vector<uint8_t> bytes;            // empty: nothing to describe
  std::vector<Relocation> relocations;   // offsets into `bytes`, symbols of the input object
};

Result<EhFrameSubset> eh_frame_subset(const Object& obj, const std::set<size_t>& text_sections);

}  // namespace lg::builder

namespace lg::builder {

// Whether an exception leaving the call whose last byte is at [site] (an offset in the text
// section [text_section]) would end in std::terminate there: the function has an LSDA (C++
// handlers or cleanups) and no entry of its call-site table covers the call — GCC leaves out
// calls it proved cannot throw. false: no LSDA (the exception passes through) or covered.
// nullopt: cannot tell (no FDE, an encoding not handled).
std::optional<bool> call_site_terminates(const Object& obj, size_t text_section, uint64_t site);

}  // namespace lg::builder
