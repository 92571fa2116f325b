// Pass 1: load a relocatable object into the builder's model (object.h) with elfutils libelf.
#pragma once

#include <string>

#include "builder/object.h"
#include "common/result.h"

namespace lg::builder {

// Reads an ELF64 x86-64 ET_REL file. Errors name the file and what is wrong with it (not ELF,
// not relocatable, not x86-64, a SHT_REL section, a relocation naming a symbol out of range).
Result<Object> load_object(const std::string& path);

}  // namespace lg::builder
