// Hex strings for bytes and build-ids.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace lg {

std::string to_hex(std::span<const uint8_t> bytes);
// Lower- or upper-case hex, even length; nullopt on anything else.
std::optional<std::vector<uint8_t>> from_hex(std::string_view hex);

}  // namespace lg
