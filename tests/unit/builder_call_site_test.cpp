// call_site_terminates (src/builder/eh_frame.h): whether an exception leaving a call would end
// in std::terminate in the caller, read from the caller's LSDA call-site table in a relocatable
// object. GCC leaves out of the table the calls it proved cannot throw (a leaf it saw), unless
// the call falls inside a range it merged with neighbouring calls. The objects are compiled here.
#include <gtest/gtest.h>
#include <elf.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "builder/eh_frame.h"
#include "builder/load.h"

namespace fs = std::filesystem;

namespace lg::builder {
namespace {

const char* kSource = R"(
#include <stdexcept>
struct Request { const char* user; int level; };
void note(const char*);
__attribute__((noinline)) int check(const Request* r) {
#ifdef THROWS
  if (r->level > 2) throw std::invalid_argument("refused");
#endif
  return r->level <= 3;
}
__attribute__((noinline)) int handle(const Request* r) {
  try {
#ifdef NOTE_FIRST
    note("a");
#endif
    int ok = check(r);
    note(r->user);
    return ok;
  } catch (const std::exception&) {
    return -1;
  }
}
__attribute__((noinline)) int plain(const Request* r) { return check(r) + 1; }
)";

// Compiles kSource with [defines]; the answer for the call to check() in [caller].
std::optional<bool> terminates_in(const std::string& caller, const std::string& defines) {
  fs::path dir = fs::temp_directory_path() / ("lg-call-site-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "v.cpp") << kSource;
  std::string cmd = "g++ -O2 -ffunction-sections -fdata-sections " + defines + " -c " + (dir / "v.cpp").string() + " -o " +
                    (dir / "v.o").string();
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  auto obj = load_object((dir / "v.o").string());
  fs::remove_all(dir);
  EXPECT_TRUE(obj.ok());
  if (!obj.ok()) return std::nullopt;
  const Symbol* fn = nullptr;
  for (const Symbol& s : obj->symbols)
    if (s.name == caller && s.is_function() && s.defined()) fn = &s;
  EXPECT_NE(fn, nullptr) << caller;
  if (!fn) return std::nullopt;
  const Section& sec = obj->sections[fn->shndx];
  for (const Relocation& r : sec.relocations)
    if (r.type == R_X86_64_PLT32 && obj->symbols[r.symbol].name == "_Z5checkPK7Request")
      return call_site_terminates(*obj, sec.index, r.offset + 3);
  ADD_FAILURE() << "no call to check in " << caller;
  return std::nullopt;
}

TEST(CallSite, CallToALeafGccProvedNothrowIsNotInTheCallersTable) {
  EXPECT_EQ(terminates_in("_Z6handlePK7Request", ""), std::optional<bool>(true));
}

TEST(CallSite, CallInsideARangeMergedWithNeighbouringCallsIsCovered) {
  EXPECT_EQ(terminates_in("_Z6handlePK7Request", "-DNOTE_FIRST"), std::optional<bool>(false));
}

TEST(CallSite, CallToAFunctionThatMayThrowIsCovered) {
  EXPECT_EQ(terminates_in("_Z6handlePK7Request", "-DTHROWS"), std::optional<bool>(false));
}

TEST(CallSite, CallerWithoutHandlersOrCleanupsLetsExceptionsThrough) {
  EXPECT_EQ(terminates_in("_Z5plainPK7Request", ""), std::optional<bool>(false));
}

}  // namespace
}  // namespace lg::builder
