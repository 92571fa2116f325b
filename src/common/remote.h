// RemoteAddr: an address in the target process. Never a bare integer at an interface.
#pragma once

#include <compare>
#include <cstdint>

#include <fmt/format.h>

namespace lg {

struct RemoteAddr {
  uint64_t value = 0;

  constexpr RemoteAddr() = default;
  constexpr explicit RemoteAddr(uint64_t v) : value(v) {}
  constexpr RemoteAddr operator+(int64_t d) const { return RemoteAddr(value + static_cast<uint64_t>(d)); }
  constexpr RemoteAddr operator-(int64_t d) const { return RemoteAddr(value - static_cast<uint64_t>(d)); }
  constexpr int64_t operator-(RemoteAddr o) const { return static_cast<int64_t>(value - o.value); }
  constexpr auto operator<=>(const RemoteAddr&) const = default;
  constexpr bool is_null() const { return value == 0; }
};

// A half-open address range [lo, hi) in the target.
struct RemoteRange {
  RemoteAddr lo, hi;
  constexpr bool contains(RemoteAddr a) const { return a >= lo && a < hi; }
  constexpr uint64_t size() const { return hi.value - lo.value; }
};

}  // namespace lg

template <>
struct fmt::formatter<lg::RemoteAddr> : fmt::formatter<std::string_view> {
  auto format(lg::RemoteAddr a, format_context& ctx) const {
    return fmt::format_to(ctx.out(), "{:#x}", a.value);
  }
};
