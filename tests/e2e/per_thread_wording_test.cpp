// What apply and revert print when they finish a per-thread transition that an earlier
// `--on-timeout keep` left in progress: which transition it was, and where the patch ended up.
// (Seen on memcached: "reversed the apply of patch 'two' in process N completed".)
#include <gtest/gtest.h>

#include "harness.h"
#include "per_thread_support.h"

namespace lg::e2e {
namespace {

TEST(PerThreadWording, FinishingATransitionInProgressSaysWhereThePatchEndedUp) {
  Target t(target_path("pt_pair"));
  const std::string pid = std::to_string(t.pid());
  ASSERT_EQ(t.ask("b"), "started");  // a thread stays inside outer(): the apply cannot finish
  CliRun k = pt({"apply", "--timeout", "0.3", "--on-timeout", "keep", pid, patch_path("pt_pair_fix")});
  ASSERT_EQ(k.exit_code, 5) << k.err << k.out;
  CliRun r = pt({"revert", "--timeout", "30", pid, "pt-pair-fix"});
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  EXPECT_NE(r.out.find("reversed the apply of patch 'pt-pair-fix' that was in progress in process " + pid +
                       ": the patch is not applied\n"),
            std::string::npos)
      << r.out;
  EXPECT_EQ(t.ask("c"), "110");

  k = pt({"apply", "--timeout", "0.3", "--on-timeout", "keep", pid, patch_path("pt_pair_fix")});
  ASSERT_EQ(k.exit_code, 5) << k.err << k.out;
  t.send("r");
  EXPECT_EQ(t.read_line(), "done 110");  // the blocked thread leaves outer(), in the old version
  CliRun a = pt({"apply", "--timeout", "30", pid, patch_path("pt_pair_fix")});
  ASSERT_EQ(a.exit_code, 0) << a.err << a.out;
  EXPECT_NE(a.out.find("finished the apply of patch 'pt-pair-fix' that was in progress in process " + pid +
                       ": the patch is applied\n"),
            std::string::npos)
      << a.out;
  EXPECT_EQ(t.ask("c"), "220");
}

}  // namespace
}  // namespace lg::e2e
