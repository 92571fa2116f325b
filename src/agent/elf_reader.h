// The agent reads patch objects with the one bounds-checked ET_REL reader the controller uses
// too (src/elf/rel_object.h); it is compiled into the agent (libc only, no libelf).
#pragma once

#include "elf/rel_object.h"

namespace lg::agent {

using elf::RelObject;
using elf::RelSection;

}  // namespace lg::agent
