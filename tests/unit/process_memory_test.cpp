// Process registers and memory access on a real target.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include "process/process.h"
#include "process/test_support.h"
#include "seized_program.h"

namespace lg {
namespace {

using ProcessMemory = SeizedProgramTest;

using namespace std::chrono_literals;
using testing::TargetProcess;

TEST_F(ProcessMemory, WriteGlobalChangesTargetOutput) {
  ASSERT_NO_FATAL_FAILURE(start_program("process_counter", {"2"}, "addr value "));
  const std::string& addr_line = ready_line;
  RemoteAddr value(std::strtoull(addr_line.c_str() + 11, nullptr, 16));
  ASSERT_FALSE(target.wait_prefix("tick").empty());

  ASSERT_NO_FATAL_FAILURE(seize_started());
  Process& p = *seized;
  auto old = p.read_value<long>(value);
  ASSERT_TRUE(old.ok()) << old.error().describe();
  EXPECT_EQ(*old, 1);
  long v = 4242;
  ASSERT_TRUE(p.write_memory(value, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(&v), sizeof v)).ok());
  EXPECT_EQ(*p.read_value<long>(value), 4242);
  seized.reset();
  EXPECT_FALSE(target.wait_line([](const std::string& l) { return l.find("value 4242") != std::string::npos; }).empty());
}

TEST_F(ProcessMemory, ReadOnlyMappingIsWritableForTheTracerAndUnmappedIsAnError) {
  ASSERT_NO_FATAL_FAILURE(seize_program("process_counter", {"1"}, "tick"));
  Process& p = *seized;

  // libc's read-only first page (its ELF header), which nothing uses while we hold it.
  RemoteAddr text(testing::libc_base(target.pid()));
  ASSERT_FALSE(text.is_null());
  ASSERT_TRUE(p.stop_all(5s).ok());
  std::vector<uint8_t> orig(16);
  ASSERT_TRUE(p.read_memory(text, orig).ok());
  EXPECT_EQ(orig[0], 0x7f);
  std::vector<uint8_t> junk(16, 0xcc);
  ASSERT_TRUE(p.write_memory(text + 8, std::span<const uint8_t>(junk.data(), 8)).ok());
  std::vector<uint8_t> now(16);
  ASSERT_TRUE(p.read_memory(text, now).ok());
  EXPECT_EQ(now[8], 0xcc);
  ASSERT_TRUE(p.write_memory(text, orig).ok());

  // A large read across many pages (short-read handling) of the stack mapping.
  auto maps = read_proc_maps(target.pid());
  ASSERT_TRUE(maps.ok());
  for (const auto& m : *maps) {
    if (m.path != "[stack]") continue;
    std::vector<uint8_t> big(m.range.size());
    EXPECT_TRUE(p.read_memory(m.range.lo, big).ok());
  }
  std::vector<uint8_t> buf(8);
  auto bad = p.read_memory(RemoteAddr(0x10), buf);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().kind, ErrorKind::io);
  ASSERT_TRUE(p.resume_all().ok());
}

TEST_F(ProcessMemory, RegistersRoundTrip) {
  ASSERT_NO_FATAL_FAILURE(seize_program("process_counter", {"1"}, "tick"));
  Process& p = *seized;
  pid_t worker = p.threads().back();
  EXPECT_FALSE(p.get_regs(worker).ok());  // not stopped
  ASSERT_TRUE(p.stop_thread(worker, 5s).ok());
  auto regs = p.get_regs(worker);
  ASSERT_TRUE(regs.ok());
  Registers r = *regs;
  r.r15 ^= 0x5a5a;
  ASSERT_TRUE(p.set_regs(worker, r).ok());
  EXPECT_EQ(p.get_regs(worker)->r15, r.r15);
  ASSERT_TRUE(p.set_regs(worker, *regs).ok());
  ASSERT_TRUE(p.resume_thread(worker).ok());
  seized.reset();
  target.drain();
  EXPECT_FALSE(target.wait_prefix("tick").empty());
}

}  // namespace
}  // namespace lg
