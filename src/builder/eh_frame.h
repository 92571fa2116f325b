// The part of a relocatable object's .eh_frame that describes a set of text sections: every
// FDE whose pc_begin relocation points into one of them, with the CIEs they use. The patch
// object carries it so that unwinders (the controller's stack check, C++ exceptions) can walk
// through patch code. A zero terminator closes the table (what __register_frame expects).
#pragma once

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
