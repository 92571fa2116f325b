// The controller's grace period for the agent's retired code (src/controller/reclaim.h): who
// must be seen, what counts as inside, and that nothing is all clear unseen.
#include <gtest/gtest.h>

#include "controller/reclaim.h"

namespace lg {
namespace {

protocol::StatusResponse status_with(uint64_t retired_upto, uint64_t reclaimed_upto) {
  protocol::StatusResponse s;
  protocol::ArenaInfo a;
  a.retired_upto = retired_upto;
  a.reclaimed_upto = reclaimed_upto;
  a.retired_ranges = {{RemoteAddr(0x1000), RemoteAddr(0x1020)}};
  s.arena = a;
  return s;
}

StackTrace walk(std::vector<uint64_t> pcs, bool complete = true) {
  StackTrace t;
  for (size_t i = 0; i < pcs.size(); ++i) {
    Frame f;
    f.pc = RemoteAddr(pcs[i]);
    f.lookup_pc = RemoteAddr(i == 0 ? pcs[i] : pcs[i] - 1);
    t.frames.push_back(f);
  }
  t.complete = complete;
  if (!complete) t.stop_reason = "no CFI";
  return t;
}

TEST(GraceWatch, NothingRetiredOrNoArenaMeansNothingToDo) {
  EXPECT_FALSE(GraceWatch::from_status(protocol::StatusResponse{}).active());
  EXPECT_FALSE(GraceWatch::from_status(status_with(4, 4)).active());
  EXPECT_TRUE(GraceWatch::from_status(status_with(5, 4)).active());
}

TEST(GraceWatch, EveryExpectedThreadMustBeSeenOutside) {
  GraceWatch g = GraceWatch::from_status(status_with(5, 0));
  EXPECT_FALSE(g.all_clear()) << "nobody looked yet";
  g.expect({10, 11, 12});
  g.observe(10, walk({0x5000, 0x6000}));
  EXPECT_FALSE(g.all_clear());
  EXPECT_EQ(g.unseen(), (std::vector<pid_t>{11, 12}));
  g.observe(11, walk({0x5000}));
  g.gone(12);  // exited: it cannot be anywhere
  EXPECT_TRUE(g.all_clear()) << g.why_not();
  EXPECT_EQ(g.upto(), 5u);
}

TEST(GraceWatch, APcOrAReturnAddressInsideOrAnIncompleteWalkKeepsEverything) {
  for (const auto& t : {walk({0x1010}), walk({0x5000, 0x1008}), walk({0x5000, 0x1020}), walk({0x5000}, false)}) {
    GraceWatch g = GraceWatch::from_status(status_with(1, 0));
    g.expect({10});
    g.observe(10, t);
    EXPECT_FALSE(g.all_clear());
    EXPECT_NE(g.why_not().find("thread 10"), std::string::npos);
  }
  GraceWatch g = GraceWatch::from_status(status_with(1, 0));
  g.expect({10});
  g.observe(10, walk({0x5000}), /*off_own_stack=*/true);
  EXPECT_FALSE(g.all_clear()) << "a thread on a stack that is not its own";
}

TEST(GraceWatch, SeenOutsideOnceIsEnoughAndAThreadThatLeftCounts) {
  GraceWatch g = GraceWatch::from_status(status_with(1, 0));
  g.expect({10});
  g.observe(10, walk({0x1010}));
  g.observe(10, walk({0x5000}));  // it left: nothing leads back in
  EXPECT_TRUE(g.all_clear());
  g.observe(10, walk({0x5000}, false));
  EXPECT_TRUE(g.all_clear());
  g.expect({10});  // stop-the-world: a new attempt forgets what the last one saw
  EXPECT_FALSE(g.all_clear());
}

TEST(GraceWatch, GivenUpMeansNoReclaim) {
  GraceWatch g = GraceWatch::from_status(status_with(1, 0));
  g.give_up();
  g.expect({10});
  g.observe(10, walk({0x5000}));
  EXPECT_FALSE(g.all_clear());
}

}  // namespace
}  // namespace lg
