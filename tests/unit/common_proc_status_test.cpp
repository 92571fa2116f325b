// proc_status_field: one line of a /proc/PID/task/TID/status text, as the signal-mask, seccomp,
// tracer and thread checks read them.
#include <gtest/gtest.h>
#include <unistd.h>

#include "common/proc_maps.h"

namespace lg {
namespace {

constexpr const char* kStatus =
    "Name:\tworker one\n"
    "State:\tS (sleeping)\n"
    "TracerPid:\t0\n"
    "SigBlk:\tfffffffe7ffbfeff\n"
    "Seccomp:\t2\n";

TEST(ProcStatus, ReadsAFieldWithoutItsTabs) {
  EXPECT_EQ(proc_status_field(kStatus, "Name"), "worker one");
  EXPECT_EQ(proc_status_field(kStatus, "SigBlk"), "fffffffe7ffbfeff");
  EXPECT_EQ(proc_status_field(kStatus, "Seccomp"), "2");  // the last line, no newline after it
}

TEST(ProcStatus, MatchesWholeNamesOnly) {
  // "Sig" is a prefix of "SigBlk", and "Blk" a suffix: neither is a field of this text.
  EXPECT_FALSE(proc_status_field(kStatus, "Sig").has_value());
  EXPECT_FALSE(proc_status_field(kStatus, "Blk").has_value());
  EXPECT_FALSE(proc_status_field("", "Name").has_value());
}

TEST(ProcStatus, ReadsThisProcessStatus) {
  auto text = read_text_file("/proc/self/status");
  ASSERT_TRUE(text.ok());
  auto pid = proc_status_field(*text, "Pid");
  ASSERT_TRUE(pid.has_value());
  EXPECT_EQ(std::string(*pid), std::to_string(::getpid()));
}

}  // namespace
}  // namespace lg
