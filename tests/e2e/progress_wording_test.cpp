// What livegraft prints while it waits, for people: the stop-the-world "waiting:" line names the
// blocking thread and what holds it, as the per-thread one does. (Seen on memcached: "waiting: 1
// thread(s) have an affected function on the stack (attempt 10)", and nothing said which.)
#include <gtest/gtest.h>

#include "harness.h"

namespace lg::e2e {
namespace {

TEST(ProgressWording, StopTheWorldWaitingLineNamesTheBlockingThread) {
  Target t(target_path("pt_pair"));
  const std::string pid = std::to_string(t.pid());
  ASSERT_EQ(t.ask("b"), "started");  // a thread stays inside outer(), which the patch changes
  CliRun a = livegraft({"apply", "--model", "stop-the-world", "--timeout", "0.5", pid, patch_path("pt_pair_fix")});
  ASSERT_EQ(a.exit_code, 5) << a.err << a.out;
  const size_t line = a.err.find("waiting: 1 thread(s) have an affected function on the stack (attempt 1) (thread ");
  ASSERT_NE(line, std::string::npos) << a.err;
  const std::string text = a.err.substr(line, a.err.find('\n', line) - line);
  EXPECT_NE(text.find("outer+"), std::string::npos) << text;
  EXPECT_NE(text.find("is on its stack)"), std::string::npos) << text;
  EXPECT_EQ(t.ask("c"), "110");  // nothing was changed
  t.send("r");
  EXPECT_EQ(t.read_line(), "done 110");
}

}  // namespace
}  // namespace lg::e2e
