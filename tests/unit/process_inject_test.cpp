// inject_library: remote dlopen into a running target.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/proc_maps.h"
#include "process/process.h"
#include "process/test_support.h"

namespace lg {
namespace {

using namespace std::chrono_literals;
using testing::TargetProcess;

// The tests' stand-in for the controller's stack check: no thread inside the dynamic loader.
std::function<Result<bool>(pid_t, const Registers&)> not_in_ld_so(pid_t pid) {
  return [pid](pid_t, const Registers& regs) -> Result<bool> {
    LG_TRY(auto maps, read_proc_maps(pid));
    for (const auto& m : maps)
      if (m.range.contains(RemoteAddr(regs.rip)) && m.path.find("ld-linux") != std::string::npos) return false;
    return true;
  };
}

bool maps_contain(pid_t pid, const std::string& path) {
  auto text = read_proc_maps_text(pid);
  return text.ok() && text->find(path) != std::string::npos;
}

TEST(ProcessInject, LibraryWithConstructorIsLoadedAndTargetKeepsRunning) {
  std::string exe = testing::build_program("process_counter");
  ASSERT_FALSE(exe.empty());
  std::string marker = testing::scratch_dir() + "/injected.marker";
  std::string so = testing::build_shared_library("process_inject_marker", R"(
#include <fcntl.h>
#include <unistd.h>
__attribute__((constructor)) static void on_load(void) {
  int fd = open(")" + marker + R"(", O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd >= 0) { write(fd, "loaded\n", 7); close(fd); }
}
int process_inject_marker_value(void) { return 42; }
)");
  ASSERT_FALSE(so.empty());
  TargetProcess target;
  ASSERT_TRUE(target.start(exe, {"4"}));
  ASSERT_FALSE(target.wait_prefix("tick").empty());
  ASSERT_FALSE(maps_contain(target.pid(), so));

  auto seized = Process::seize(target.pid());
  ASSERT_TRUE(seized.ok()) << seized.error().describe();
  auto r = inject_library(**seized, so, not_in_ld_so(target.pid()), 10s);
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_TRUE(maps_contain(target.pid(), so));
  std::ifstream in(marker);
  std::string content;
  std::getline(in, content);
  EXPECT_EQ(content, "loaded");
  // Every thread is running again.
  for (pid_t tid : (*seized)->threads()) EXPECT_FALSE((*seized)->is_stopped(tid));
  seized->reset();
  target.drain();
  std::string t0 = target.wait_prefix("tick");
  ASSERT_FALSE(t0.empty());
  EXPECT_FALSE(target.wait_prefix("tick").empty());
}

TEST(ProcessInject, DlopenFailureReportsDlerror) {
  std::string exe = testing::build_program("process_counter");
  ASSERT_FALSE(exe.empty());
  std::string bogus = testing::scratch_dir() + "/not-a-library.so";
  {
    std::ofstream out(bogus);
    out << std::string(256, '#') << "\nthis is not an ELF file\n";
  }
  TargetProcess target;
  ASSERT_TRUE(target.start(exe, {"1"}));
  ASSERT_FALSE(target.wait_prefix("tick").empty());
  auto seized = Process::seize(target.pid());
  ASSERT_TRUE(seized.ok()) << seized.error().describe();
  auto r = inject_library(**seized, bogus, not_in_ld_so(target.pid()), 10s);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("not-a-library.so"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("ELF"), std::string::npos) << r.error().message;  // dlerror's "invalid ELF header"

  auto missing = inject_library(**seized, testing::scratch_dir() + "/missing.so", not_in_ld_so(target.pid()), 1s);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().kind, ErrorKind::not_found);
  seized->reset();
  target.drain();
  EXPECT_FALSE(target.wait_prefix("tick").empty());
}

TEST(ProcessInject, NoSafeThreadTimesOutAsUnsafe) {
  std::string exe = testing::build_program("process_counter");
  ASSERT_FALSE(exe.empty());
  std::string so = testing::build_shared_library("process_inject_never", "int process_inject_never(void) { return 1; }\n");
  ASSERT_FALSE(so.empty());
  TargetProcess target;
  ASSERT_TRUE(target.start(exe, {"2"}));
  ASSERT_FALSE(target.wait_prefix("tick").empty());
  auto seized = Process::seize(target.pid());
  ASSERT_TRUE(seized.ok()) << seized.error().describe();
  auto r = inject_library(**seized, so, [](pid_t, const Registers&) -> Result<bool> { return false; }, 200ms);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::unsafe) << r.error().describe();
  EXPECT_FALSE(maps_contain(target.pid(), so));
  // Every thread stopped for inspection was resumed (ThreadStopScope).
  for (pid_t tid : (*seized)->threads()) EXPECT_FALSE((*seized)->is_stopped(tid)) << tid;
  seized->reset();
  target.drain();
  EXPECT_FALSE(target.wait_prefix("tick").empty());
}

TEST(ProcessInject, ThreadWithAlmostNoStackLeftIsBorrowedAndTheNextDlopenStillWorks) {
  std::string exe = testing::build_program("process_low_stack");
  ASSERT_FALSE(exe.empty());
  std::string first = testing::build_shared_library("process_inject_low1", "int process_inject_low1(void) { return 1; }\n");
  std::string second = testing::build_shared_library("process_inject_low2", "int process_inject_low2(void) { return 2; }\n");
  ASSERT_FALSE(first.empty());
  ASSERT_FALSE(second.empty());
  TargetProcess target;
  ASSERT_TRUE(target.start(exe));
  std::string low = target.wait_prefix("low ");
  ASSERT_FALSE(low.empty());
  const pid_t low_tid = static_cast<pid_t>(std::atol(low.c_str() + 4));
  ASSERT_LT(std::atol(low.c_str() + low.find(' ', 4) + 1), 2048) << low;
  auto seized = Process::seize(target.pid());
  ASSERT_TRUE(seized.ok()) << seized.error().describe();
  // Only the thread with ~1.5 KiB of stack left may be borrowed: dlopen needs far more.
  auto only_low = [&](pid_t tid, const Registers& regs) -> Result<bool> {
    if (tid != low_tid) return false;
    return not_in_ld_so(target.pid())(tid, regs);
  };
  auto r = inject_library(**seized, first, only_low, 10s);
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_TRUE(maps_contain(target.pid(), first));
  // The loader lock was released: another dlopen, in any thread, completes.
  auto again = inject_library(**seized, second, not_in_ld_so(target.pid()), 10s);
  ASSERT_TRUE(again.ok()) << again.error().describe();
  EXPECT_TRUE(maps_contain(target.pid(), second));
  seized->reset();
  target.drain();
  EXPECT_FALSE(target.wait_prefix("tick").empty());
}

}  // namespace
}  // namespace lg
