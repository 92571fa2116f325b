// The cache of original objects (src/builder/object_cache.h): a hit is the object the compile
// gives, byte for byte; anything that decides the object (a header, a flag, the compiler) changes
// the key; a damaged entry is detected and ignored; `livegraft build` takes the original from the
// cache on its second build and not with --no-cache.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "builder/compile_commands.h"
#include "builder/object_cache.h"
#include "run_command.h"

namespace fs = std::filesystem;
using lg::builder::CacheFetch;
using lg::builder::CompileCommand;
using lg::builder::ObjectCache;
using lg::builder_test::run;

namespace {

const fs::path kLivegraft = fs::path(LG_BINARY_DIR) / "livegraft";

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << text;
}

// A unit with a header in a fresh directory per test, and its compile command.
class ObjectCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(LG_BINARY_DIR) / "builder-cache" / ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(dir_);
    write(dir_ / "src" / "scale.h", "#define SCALE 3\nstruct point { int x, y; };\n");
    write(dir_ / "src" / "unit.c",
          "#include \"scale.h\"\nint scaled(struct point p) { return p.x * SCALE + p.y; }\n"
          "int twice(int v) { return 2 * v; }\n");
    cmd_ = CompileCommand{(dir_ / "src").string(), {"gcc", "-O2", "-g", "-fPIC", "-c", "unit.c", "-o", "unit.o"},
                          (dir_ / "src" / "unit.c").string(), (dir_ / "src" / "unit.o").string(), false};
  }

  // Compiles `c` as the builder does (object_command) into `object`.
  void compile(const CompileCommand& c, const fs::path& object) {
    std::string out;
    ASSERT_EQ(run(lg::builder::object_command(c, object), &out), 0) << out;
  }

  std::string key(const CompileCommand& c) {
    auto k = cache().key(c);
    EXPECT_TRUE(k) << (k ? "" : k.error().message);
    return k ? k->hex : std::string();
  }

  ObjectCache cache(uint64_t max = 1ull << 30) { return ObjectCache(dir_ / "cache", max); }

  fs::path dir_;
  CompileCommand cmd_;
};

}  // namespace

TEST_F(ObjectCacheTest, HitGivesTheByteIdenticalObject) {
  const std::string k = key(cmd_);
  ASSERT_EQ(k.size(), 64u);
  EXPECT_EQ(key(cmd_), k) << "the key of the same compile is the same";
  compile(cmd_, dir_ / "first.o");
  ASSERT_TRUE(cache().store(k, dir_ / "first.o"));
  std::string why;
  ASSERT_EQ(cache().fetch(k, dir_ / "hit.o", &why), CacheFetch::hit) << why;
  EXPECT_TRUE(slurp(dir_ / "hit.o") == slurp(dir_ / "first.o"));
  // A compile into another path gives the same bytes (so the key leaves the output path out).
  fs::create_directories(dir_ / "elsewhere");
  compile(cmd_, dir_ / "elsewhere" / "again.o");
  EXPECT_TRUE(slurp(dir_ / "elsewhere" / "again.o") == slurp(dir_ / "hit.o"));
}

TEST_F(ObjectCacheTest, ChangedHeaderMisses) {
  const std::string before = key(cmd_);
  compile(cmd_, dir_ / "first.o");
  ASSERT_TRUE(cache().store(before, dir_ / "first.o"));
  write(dir_ / "src" / "scale.h", "#define SCALE 4\nstruct point { int x, y; };\n");
  const std::string after = key(cmd_);
  EXPECT_NE(after, before);
  EXPECT_EQ(cache().fetch(after, dir_ / "out.o", nullptr), CacheFetch::miss);
  EXPECT_FALSE(fs::exists(dir_ / "out.o"));
  // A macro no code uses is still part of the input (-g3 puts macros in the object).
  write(dir_ / "src" / "scale.h", "#define SCALE 4\n#define UNUSED 1\nstruct point { int x, y; };\n");
  EXPECT_NE(key(cmd_), after);
}

TEST_F(ObjectCacheTest, ChangedFlagMisses) {
  const std::string base = key(cmd_);
  CompileCommand c = cmd_;
  c.argv[1] = "-O1";
  EXPECT_NE(key(c), base);
  c = cmd_;
  c.argv.insert(c.argv.begin() + 1, "-fno-omit-frame-pointer");
  EXPECT_NE(key(c), base);
  // The directory it runs in (DW_AT_comp_dir) is part of the compile too.
  c = cmd_;
  fs::copy(dir_ / "src", dir_ / "src2", fs::copy_options::recursive);
  c.directory = (dir_ / "src2").string();
  c.file = (dir_ / "src2" / "unit.c").string();
  EXPECT_NE(key(c), base);
  // Only the output path is left out: another -o is the same key.
  c = cmd_;
  c.argv[7] = "other.o";
  EXPECT_EQ(key(c), base);
}

TEST_F(ObjectCacheTest, ChangedCompilerPathMisses) {
  const std::string base = key(cmd_);
  std::string gcc;
  ASSERT_EQ(run("command -v gcc", &gcc), 0);
  while (!gcc.empty() && gcc.back() == '\n') gcc.pop_back();
  CompileCommand c = cmd_;
  c.argv[0] = gcc;  // the same compiler by its absolute path
  EXPECT_NE(key(c), base);
  fs::create_directories(dir_ / "bin");
  fs::create_symlink(fs::canonical(gcc), dir_ / "bin" / "my-gcc");
  c.argv[0] = (dir_ / "bin" / "my-gcc").string();
  const std::string by_link = key(c);
  EXPECT_NE(by_link, base);
  // Another compiler behind the same path: a changed file is another identity.
  fs::remove(dir_ / "bin" / "my-gcc");
  write(dir_ / "bin" / "my-gcc", "#!/bin/sh\nexec gcc \"$@\"\n");
  fs::permissions(dir_ / "bin" / "my-gcc", fs::perms::owner_all);
  EXPECT_NE(key(c), by_link);
}

TEST_F(ObjectCacheTest, DamagedEntryIsDetectedAndIgnored) {
  const std::string k = key(cmd_);
  compile(cmd_, dir_ / "first.o");
  const std::string object = slurp(dir_ / "first.o");
  const fs::path entry = cache().entry_path(k);
  std::string why;
  // Truncated (a full disk, a crash while writing before the rename was atomic, ...).
  ASSERT_TRUE(cache().store(k, dir_ / "first.o"));
  const std::string whole = slurp(entry);
  write(entry, whole.substr(0, whole.size() - 100));
  EXPECT_EQ(cache().fetch(k, dir_ / "out.o", &why), CacheFetch::damaged);
  EXPECT_NE(why.find("damaged"), std::string::npos) << why;
  EXPECT_FALSE(fs::exists(entry)) << "a damaged entry is removed";
  EXPECT_FALSE(fs::exists(dir_ / "out.o"));
  // One byte of the object changed.
  std::string flipped = whole;
  flipped[flipped.size() - 10] ^= 0x40;
  write(entry, flipped);
  EXPECT_EQ(cache().fetch(k, dir_ / "out.o", &why), CacheFetch::damaged);
  EXPECT_NE(why.find("SHA-256"), std::string::npos) << why;
  // Another entry's file under this key's name.
  CompileCommand other = cmd_;
  other.argv[1] = "-O1";
  const std::string k2 = key(other);
  compile(other, dir_ / "other.o");
  ASSERT_TRUE(cache().store(k2, dir_ / "other.o"));
  fs::copy_file(cache().entry_path(k2), entry, fs::copy_options::overwrite_existing);
  EXPECT_EQ(cache().fetch(k, dir_ / "out.o", &why), CacheFetch::damaged);
  EXPECT_NE(why.find("key"), std::string::npos) << why;
  // Garbage, and empty.
  write(entry, "not an entry");
  EXPECT_EQ(cache().fetch(k, dir_ / "out.o", &why), CacheFetch::damaged);
  write(entry, "");
  EXPECT_EQ(cache().fetch(k, dir_ / "out.o", &why), CacheFetch::damaged);
  EXPECT_FALSE(fs::exists(dir_ / "out.o"));
  // Stored again, it is a hit again.
  ASSERT_TRUE(cache().store(k, dir_ / "first.o"));
  ASSERT_EQ(cache().fetch(k, dir_ / "out.o", &why), CacheFetch::hit) << why;
  EXPECT_TRUE(slurp(dir_ / "out.o") == object);
}

TEST_F(ObjectCacheTest, SizeBoundRemovesTheLeastRecentlyUsed) {
  compile(cmd_, dir_ / "first.o");
  const uint64_t size = fs::file_size(dir_ / "first.o");
  ObjectCache small = cache(size * 2 + 1000);  // room for two entries
  ASSERT_TRUE(small.store(std::string(64, 'a'), dir_ / "first.o"));
  ASSERT_TRUE(small.store(std::string(64, 'b'), dir_ / "first.o"));
  fs::last_write_time(small.entry_path(std::string(64, 'a')), fs::file_time_type::clock::now() - std::chrono::hours(2));
  ASSERT_TRUE(small.store(std::string(64, 'c'), dir_ / "first.o"));
  EXPECT_FALSE(fs::exists(small.entry_path(std::string(64, 'a'))));
  EXPECT_TRUE(fs::exists(small.entry_path(std::string(64, 'b'))));
  EXPECT_TRUE(fs::exists(small.entry_path(std::string(64, 'c'))));
}

TEST_F(ObjectCacheTest, CompilesWithInputsTheKeyDoesNotCoverAreNotCached) {
  for (const char* arg : {"-fplugin=/tmp/p.so", "@args.rsp", "-gsplit-dwarf", "-fprofile-use", "-B/opt/gcc", "--coverage",
                          "-specs=my.specs"}) {
    CompileCommand c = cmd_;
    c.argv.insert(c.argv.begin() + 1, arg);
    auto k = cache().key(c);
    ASSERT_FALSE(k) << arg;
    EXPECT_EQ(k.error().kind, lg::ErrorKind::unsupported) << arg;
  }
  // Inline assembly that includes a file: the assembler reads it, the preprocessor does not.
  write(dir_ / "src" / "unit.c", "__asm__(\".incbin \\\"data.bin\\\"\");\nint twice(int v) { return 2 * v; }\n");
  EXPECT_FALSE(cache().key(cmd_));
}

// `livegraft build` twice on one project: the second build's original is the first one's, byte
// for byte, and its times: line says so; with --no-cache nothing is looked up or stored.
class BuildCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(kLivegraft)) GTEST_SKIP() << "livegraft is not built";
    dir_ = fs::path(LG_BINARY_DIR) / "builder-cache" / ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    fs::copy(fs::path(LG_BUILDER_CASES) / "projects" / "counter", dir_ / "counter", fs::copy_options::recursive);
    std::string out;
    ASSERT_EQ(run("make -C " + (dir_ / "counter").string(), &out), 0) << out;
  }
  enum class Cache { own, suites };  // this test's own, or whatever the environment says
  int build(const std::string& work, std::string* out, const std::string& extra = "", Cache cache = Cache::own) {
    const fs::path p = dir_ / "counter";
    const std::string env = cache == Cache::own ? "XDG_CACHE_HOME=" + (dir_ / "cache").string() + " " : "";
    return run(env + kLivegraft.string() + " build --source " + p.string() +
                   " --diff " + (p / "fix.diff").string() + " --target " + (p / "counter").string() + " -o " +
                   (dir_ / (work + ".o")).string() + " --name fix --work-dir " + (dir_ / work).string() + " " + extra,
               out);
  }
  fs::path dir_;
};

TEST_F(BuildCacheTest, SecondBuildTakesTheOriginalFromTheCache) {
  std::string first, second;
  ASSERT_EQ(build("w1", &first), 0) << first;
  EXPECT_NE(first.find("[original compiled, stored in the cache]"), std::string::npos) << first;
  ASSERT_EQ(build("w2", &second), 0) << second;
  EXPECT_NE(second.find("[original from the cache]"), std::string::npos) << second;
  EXPECT_NE(second.find("stats.c: the original from the cache"), std::string::npos) << second;
  EXPECT_EQ(second.find("stored in the cache"), std::string::npos) << second;
  // The Makefile recompiles both units: both originals from the cache, byte for byte.
  for (const char* o : {"0-0-main.o", "1-0-stats.o"}) {
    const fs::path o1 = dir_ / "w1" / "orig" / o, o2 = dir_ / "w2" / "orig" / o;
    ASSERT_TRUE(fs::exists(o1) && fs::exists(o2)) << o;
    EXPECT_TRUE(slurp(o1) == slurp(o2)) << o;
  }
  EXPECT_TRUE(slurp(dir_ / "w1.o") == slurp(dir_ / "w2.o")) << "the same patch either way";
}

TEST_F(BuildCacheTest, DamagedEntryMakesTheBuildCompileTheOriginal) {
  std::string out;
  ASSERT_EQ(build("w1", &out), 0) << out;
  size_t entries = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir_ / "cache"))
    if (e.path().extension() == ".lgo") {
      ++entries;
      fs::resize_file(e.path(), fs::file_size(e.path()) / 2);
    }
  ASSERT_EQ(entries, 2u);  // main.c and stats.c (the Makefile recompiles both)
  ASSERT_EQ(build("w2", &out), 0) << out;
  EXPECT_NE(out.find("is damaged"), std::string::npos) << out;
  EXPECT_NE(out.find("[original compiled, stored in the cache]"), std::string::npos) << out;
  ASSERT_EQ(build("w3", &out), 0) << out;
  EXPECT_NE(out.find("[original from the cache]"), std::string::npos) << out;
}

TEST_F(BuildCacheTest, NoCacheCompilesTheOriginalAndStoresNothing) {
  std::string out;
  ASSERT_EQ(build("w1", &out, "--no-cache"), 0) << out;
  EXPECT_NE(out.find("[original compiled (no cache)]"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(dir_ / "cache" / "livegraft")) << out;
  ASSERT_EQ(build("w2", &out), 0) << out;
  ASSERT_EQ(build("w3", &out, "--no-cache"), 0) << out;
  EXPECT_EQ(out.find("from the cache"), std::string::npos) << out;
}

// The builder's compiles leave out variable tracking (what it reads of the DWARF has no variable
// locations): both the original and the fixed compile, and the patch is still built.
TEST_F(BuildCacheTest, CompilesLeaveOutVariableTracking) {
  std::string out;
  ASSERT_EQ(build("w1", &out, "--no-cache"), 0) << out;
  const std::string log = slurp(dir_ / "w1" / "build.log");
  size_t n = 0;
  for (size_t at = log.find("-fno-var-tracking-assignments"); at != std::string::npos;
       at = log.find("-fno-var-tracking-assignments", at + 1))
    ++n;
  EXPECT_EQ(n, 4u) << log;  // main.c and stats.c, each original and fixed
  EXPECT_NE(out.find("CHANGED stats_average"), std::string::npos) << out;
}

// ctest runs the builder's, e2e and realworld tests with XDG_CACHE_HOME under the build tree
// (tests/CMakeLists.txt, LG_TEST_CACHE_ENV): a build there stores its originals in the build
// tree, never in the user's ~/.cache/livegraft.
TEST_F(BuildCacheTest, TheSuiteKeepsTheCacheInTheBuildTree) {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  ASSERT_TRUE(xdg && fs::path(xdg).string().starts_with(LG_BINARY_DIR))
      << "the test's environment does not put the object cache under the build tree (XDG_CACHE_HOME="
      << (xdg ? xdg : "unset") << "); run it through ctest";
  // A main.c no build has seen: its cache key is new.
  std::ofstream(dir_ / "counter" / "main.c", std::ios::app)
      << "/* " << ::getpid() << "-" << std::chrono::steady_clock::now().time_since_epoch().count() << " */\n";
  std::string out;
  ASSERT_EQ(run("make -C " + (dir_ / "counter").string(), &out), 0) << out;
  ASSERT_EQ(build("w1", &out, "", Cache::suites), 0) << out;
  std::string key;
  std::istringstream log(slurp(dir_ / "w1" / "build.log"));
  for (std::string line; std::getline(log, line);)
    if (line.starts_with("object cache: key ") && line.find("main.c") != std::string::npos)
      key = line.substr(18, line.find(' ', 18) - 18);
  ASSERT_FALSE(key.empty()) << "no cache key of main.c in build.log:\n" << slurp(dir_ / "w1" / "build.log");
  auto dir = lg::builder::default_object_cache_dir();
  ASSERT_TRUE(dir);
  EXPECT_EQ(*dir, fs::path(xdg) / "livegraft" / "objects");
  EXPECT_TRUE(fs::exists(ObjectCache(*dir, 0).entry_path(key))) << "main.c's original is not in " << *dir << ":\n" << out;
  if (const char* home = std::getenv("HOME"); home && *home == '/') {
    const fs::path home_cache = fs::path(home) / ".cache" / "livegraft" / "objects";
    EXPECT_FALSE(fs::exists(ObjectCache(home_cache, 0).entry_path(key))) << "the build wrote into " << home_cache;
  }
}
