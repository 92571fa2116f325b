// The agent's code arena gives pieces back (docs/consistency.md, "Memory"): released bytes are
// int3 before their room is handed out again, the room is reused, neighbours coalesce, and a
// rollback unmaps the pages it mapped.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "agent/code_arena.h"

namespace lg::agent {
namespace {

extern "C" __attribute__((noinline, noipa)) int arena_anchor(int x) { return x + 1; }

RemoteRange near_here() {
  auto a = reinterpret_cast<uint64_t>(&arena_anchor);
  return {RemoteAddr(a), RemoteAddr(a + 5)};
}

bool all_int3(uint64_t addr, size_t n) {
  const auto* p = reinterpret_cast<const uint8_t*>(addr);
  for (size_t i = 0; i < n; ++i)
    if (p[i] != 0xcc) return false;
  return true;
}

TEST(CodeArena, ReleasedPieceIsInt3AndItsRoomIsReused) {
  CodeArena arena;
  std::vector<uint8_t> code(20, 0x90);
  auto a = arena.place(near_here(), code);
  ASSERT_TRUE(a.ok()) << a.error().message;
  auto b = arena.place(near_here(), code);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(arena.usage().live, 64u);  // two pieces of 20 bytes, 16-byte aligned
  EXPECT_EQ(arena.usage().mapped, kPageSize);
  EXPECT_EQ(*reinterpret_cast<const uint8_t*>(*a), 0x90);
  ASSERT_TRUE(arena.release(*a).ok());
  EXPECT_TRUE(all_int3(*a, 32)) << "a freed piece must trap, not run stale code";
  EXPECT_EQ(arena.usage().live, 32u);
  EXPECT_EQ(arena.size_of(*a), 0u);
  auto c = arena.place(near_here(), code);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(*c, *a) << "the freed room is handed out again";
  EXPECT_EQ(arena.usage().mapped, kPageSize);
}

TEST(CodeArena, ManyCyclesOfPlaceAndReleaseStayInOnePage) {
  CodeArena arena;
  std::vector<uint8_t> small(19, 0x90), large(37, 0x90);
  for (int i = 0; i < 1000; ++i) {
    auto x = arena.place(near_here(), small);
    auto y = arena.place(near_here(), large);
    ASSERT_TRUE(x.ok() && y.ok());
    ASSERT_TRUE(arena.release(*x).ok());
    ASSERT_TRUE(arena.release(*y).ok());
  }
  EXPECT_EQ(arena.usage().mapped, kPageSize);
  EXPECT_EQ(arena.usage().live, 0u);
  // Neighbours coalesced: a piece as large as the page fits again.
  auto whole = arena.reserve(near_here(), kPageSize);
  ASSERT_TRUE(whole.ok());
  EXPECT_EQ(arena.usage().mapped, kPageSize);
}

TEST(CodeArena, RollbackGivesBackWhatWasReservedSinceTheMarkAndUnmapsNewPages) {
  CodeArena arena;
  std::vector<uint8_t> code(16, 0x90);
  auto kept = arena.place(near_here(), code);
  ASSERT_TRUE(kept.ok());
  auto m = arena.mark();
  auto x = arena.place(near_here(), code);
  auto big = arena.reserve(near_here(), kPageSize);  // a second page
  ASSERT_TRUE(x.ok() && big.ok());
  EXPECT_EQ(arena.usage().mapped, 2 * kPageSize);
  arena.rollback(m);
  EXPECT_EQ(arena.usage().mapped, kPageSize);
  EXPECT_EQ(arena.usage().live, 16u);
  EXPECT_EQ(arena.size_of(*kept), 16u);
  EXPECT_TRUE(all_int3(*x, 16));
}

TEST(CodeArena, ReleasingAnUnknownAddressDoesNothing) {
  CodeArena arena;
  std::vector<uint8_t> code(16, 0x90);
  auto a = arena.place(near_here(), code);
  ASSERT_TRUE(a.ok());
  EXPECT_TRUE(arena.release(*a + 1).ok());
  EXPECT_TRUE(arena.release(*a).ok());
  EXPECT_TRUE(arena.release(*a).ok());  // twice: the second is a no-op
  EXPECT_EQ(arena.usage().live, 0u);
}

}  // namespace
}  // namespace lg::agent
