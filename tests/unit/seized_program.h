// The fixture of the Process tests: a real program started, seen ready, seized.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "process/process.h"
#include "process/test_support.h"

namespace lg {

// A test program of tests/programs started, seen ready and seized. Most hazards are tried on
// process_counter (a main thread printing "tick" in a usleep loop; argument: threads to add).
class SeizedProgramTest : public ::testing::Test {
 protected:
  void start_program(const char* name, const std::vector<std::string>& args, const char* ready) {
    std::string exe = testing::build_program(name);
    ASSERT_FALSE(exe.empty());
    ASSERT_TRUE(target.start(exe, args));
    ready_line = target.wait_prefix(ready);
    ASSERT_FALSE(ready_line.empty());
  }
  // Seizes the started target (every thread, none stopped).
  void seize_started() {
    auto s = Process::seize(target.pid());
    ASSERT_TRUE(s.ok()) << s.error().describe();
    seized = std::move(*s);
  }
  void seize_program(const char* name, const std::vector<std::string>& args, const char* ready) {
    ASSERT_NO_FATAL_FAILURE(start_program(name, args, ready));
    ASSERT_NO_FATAL_FAILURE(seize_started());
  }
  // process_counter seized with its main thread stopped.
  void seize_counter_stopped() {
    ASSERT_NO_FATAL_FAILURE(seize_program("process_counter", {"1"}, "tick"));
    ASSERT_TRUE(p().stop_thread(tid(), std::chrono::seconds(5)).ok());
  }
  // The end of every hazard on process_counter: thread tid() resumed, the target detached, and
  // it keeps ticking.
  void resume_and_expect_ticking() {
    ASSERT_TRUE(p().resume_thread(tid()).ok());
    expect_ticking_after_detach();
  }
  void expect_ticking_after_detach() {
    seized.reset();
    target.drain();
    EXPECT_FALSE(target.wait_prefix("tick").empty());
  }
  RemoteAddr libc(const char* name) const { return testing::libc_function_in(target.pid(), name); }
  Process& p() { return *seized; }
  pid_t tid() const { return target.pid(); }

  testing::TargetProcess target;
  std::string ready_line;  // the target's line that said it is ready
  std::unique_ptr<Process> seized;
};

}  // namespace lg
