// Builds a minimal ELF64 x86-64 image around raw .eh_frame bytes, so that libdw (which reads CFI
// only from ELF objects) can parse the CFI of code that has no ELF file in the target: patch code
// the agent loaded and relocated itself.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace lg {

// Sections: null, .eh_frame (SHT_PROGBITS, sh_addr = [eh_frame_addr], the bytes plus a 4-byte
// zero terminator), .shstrtab. No program headers, so libdw takes the section path.
std::vector<uint8_t> build_eh_frame_image(std::span<const uint8_t> eh_frame, uint64_t eh_frame_addr);

}  // namespace lg
