// Header-only x86-64 encoders for the few instructions livegraft writes. No dependencies, so the
// agent (which links libc only) uses the same code as the controller.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <optional>

namespace lg::x86 {

inline constexpr std::array<uint8_t, 4> kEndbr64 = {0xf3, 0x0f, 0x1e, 0xfa};
inline constexpr size_t kJmpRel32Size = 5;
// jmp *disp32(%rip): ff 25 disp32
inline constexpr size_t kJmpIndirectRipSize = 6;

// Whether [to] is reachable from an instruction of [insn_size] bytes at [from] with a rel32.
inline bool rel32_reaches(uint64_t from, uint64_t to, size_t insn_size) {
  int64_t d = static_cast<int64_t>(to - (from + insn_size));
  return d >= INT32_MIN && d <= INT32_MAX;
}

// e9 rel32 at [from] jumping to [to]; nullopt when out of +-2 GiB.
inline std::optional<std::array<uint8_t, 5>> encode_jmp_rel32(uint64_t from, uint64_t to) {
  if (!rel32_reaches(from, to, 5)) return std::nullopt;
  int32_t d = static_cast<int32_t>(static_cast<int64_t>(to - (from + 5)));
  std::array<uint8_t, 5> b{0xe9};
  std::memcpy(&b[1], &d, 4);
  return b;
}

// ff 25 disp32 at [from], jumping through the 8-byte slot at [slot]; nullopt when out of range.
inline std::optional<std::array<uint8_t, 6>> encode_jmp_indirect_rip(uint64_t from, uint64_t slot) {
  if (!rel32_reaches(from, slot, 6)) return std::nullopt;
  int32_t d = static_cast<int32_t>(static_cast<int64_t>(slot - (from + 6)));
  std::array<uint8_t, 6> b{0xff, 0x25};
  std::memcpy(&b[2], &d, 4);
  return b;
}

// Where the 5-byte jump goes in a function whose first bytes are [code]: after an endbr64.
inline uint64_t jump_offset(const uint8_t* code, size_t len) {
  return len >= 4 && std::memcmp(code, kEndbr64.data(), 4) == 0 ? 4 : 0;
}

inline constexpr uint8_t kInt3 = 0xcc;

// The dispatch thunk of the per-thread model (docs/consistency.md, "Dispatch"):
//     cmpq $id, %fs:marker_tp_offset     64 48 81 3c 25 disp32 imm32   (13 bytes)
//     je   target                        0f 84 rel32                   (6 bytes)
//     jmp  initial                       e9 rel32                      (5 bytes)
// A thread whose universe marker (an initial-exec TLS word at %fs:marker_tp_offset) equals
// [id] goes to [target], every other thread to [initial]. Register contract: only RFLAGS is
// changed; every other register, the stack and the red zone are untouched, so it may sit in
// front of any function entry. nullopt when a target is out of rel32 reach or [id] does not
// fit the sign-extended imm32.
inline constexpr size_t kDispatchThunkSize = 24;
inline std::optional<std::array<uint8_t, kDispatchThunkSize>> encode_dispatch_thunk(uint64_t at, int32_t marker_tp_offset,
                                                                                    uint64_t id, uint64_t target,
                                                                                    uint64_t initial) {
  if (id > INT32_MAX) return std::nullopt;
  if (!rel32_reaches(at + 13, target, 6) || !rel32_reaches(at + 19, initial, 5)) return std::nullopt;
  std::array<uint8_t, kDispatchThunkSize> b{0x64, 0x48, 0x81, 0x3c, 0x25};
  std::memcpy(&b[5], &marker_tp_offset, 4);
  int32_t imm = static_cast<int32_t>(id);
  std::memcpy(&b[9], &imm, 4);
  b[13] = 0x0f;
  b[14] = 0x84;
  int32_t d1 = static_cast<int32_t>(static_cast<int64_t>(target - (at + 19)));
  std::memcpy(&b[15], &d1, 4);
  b[19] = 0xe9;
  int32_t d2 = static_cast<int32_t>(static_cast<int64_t>(initial - (at + 24)));
  std::memcpy(&b[20], &d2, 4);
  return b;
}

}  // namespace lg::x86
