// The agent's loader, driven inside the test process: patch objects are compiled from source
// at test time, loaded within +-2 GiB of this test executable and called directly.
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <string>

#include "agent/elf_reader.h"
#include "agent/loader.h"
#include "agent/test_helpers.h"

using namespace lg;
using namespace lg::agent;
using namespace lg::agent::testing;

// Host state that patches read and write through the `symbols` map.
extern "C" {
int lg_host_counter = 5;
__attribute__((visibility("hidden"))) int lg_host_hidden = 7;
int lg_host_init_seen = 0;
}

namespace {

class LoaderTest : public ::testing::Test {
 protected:
  std::string compile(const std::string& name, const std::string& src, Lang lang = Lang::c) {
    std::string log;
    std::string obj = compile_patch(dir_, name, src, lang, &log);
    EXPECT_FALSE(obj.empty()) << log;
    return obj;
  }
  LoadOptions options(const std::string& path) {
    LoadOptions o;
    o.path = path;
    o.target = self_object_range();
    return o;
  }
  static bool within_2g(uint64_t a, RemoteRange r) {
    return a - r.lo.value < (1ull << 31) || r.hi.value - a < (1ull << 31) || (a >= r.lo.value && a < r.hi.value);
  }
  TempDir dir_;
};

TEST_F(LoaderTest, PatchCallsLibcThroughVeneersAndDlsym) {
  auto path = compile("libc_calls", R"(
    #include <stdio.h>
    #include <string.h>
    int patched_len(const char *s) { return (int)strlen(s) + 1000; }
    int patched_format(char *buf, int n) { return snprintf(buf, 32, "n=%d", n); }
  )");
  auto opts = options(path);
  opts.dlsym_names = {"strlen"};  // an IFUNC: only dlsym knows the selected implementation
  opts.symbols["snprintf"] = reinterpret_cast<uint64_t>(&snprintf);
  auto obj = load_object(opts);
  ASSERT_TRUE(obj) << obj.error().describe();
  auto len = (*obj)->find_symbol("patched_len");
  auto fmt = (*obj)->find_symbol("patched_format");
  ASSERT_TRUE(len && fmt);
  EXPECT_TRUE(within_2g((*obj)->base(), opts.target));
  EXPECT_TRUE(within_2g((*obj)->base() + (*obj)->size() - 1, opts.target));
  EXPECT_EQ(reinterpret_cast<int (*)(const char*)>(len->addr)("hello"), 1005);
  char buf[32] = {};
  EXPECT_EQ(reinterpret_cast<int (*)(char*, int)>(fmt->addr)(buf, 42), 4);
  EXPECT_STREQ(buf, "n=42");
  // libc lies far from a PIE executable: the calls went through veneers.
  EXPECT_TRUE((*obj)->section("[veneers]").has_value());
}

TEST_F(LoaderTest, PatchReadsAndUpdatesHostGlobals) {
  auto path = compile("globals", R"(
    extern int lg_host_counter;                                        /* via the GOT */
    extern int lg_host_hidden __attribute__((visibility("hidden")));   /* PC-relative */
    int bump(int n) { lg_host_counter += n; return lg_host_counter + lg_host_hidden; }
  )");
  auto opts = options(path);
  opts.symbols["lg_host_counter"] = reinterpret_cast<uint64_t>(&lg_host_counter);
  opts.symbols["lg_host_hidden"] = reinterpret_cast<uint64_t>(&lg_host_hidden);
  auto obj = load_object(opts);
  ASSERT_TRUE(obj) << obj.error().describe();
  auto bump = (*obj)->find_symbol("bump");
  ASSERT_TRUE(bump);
  lg_host_counter = 5;
  EXPECT_EQ(reinterpret_cast<int (*)(int)>(bump->addr)(10), 15 + 7);
  EXPECT_EQ(lg_host_counter, 15);
}

TEST_F(LoaderTest, PagesHaveTheirSectionsPermissions) {
  auto path = compile("perms", R"(
    const char *greeting(void) { return "hello"; }
    int data_var = 3;
    int bss_var;
    int *addr_of_bss(void) { return &bss_var; }
  )");
  auto obj = load_object(options(path));
  ASSERT_TRUE(obj) << obj.error().describe();
  auto maps = read_proc_maps(::getpid());
  ASSERT_TRUE(maps);
  auto perms_at = [&](uint64_t a) {
    for (const auto& m : *maps)
      if (m.range.contains(RemoteAddr(a))) return std::string{m.read ? 'r' : '-', m.write ? 'w' : '-', m.exec ? 'x' : '-'};
    return std::string("unmapped");
  };
  EXPECT_EQ(perms_at((*obj)->find_symbol("greeting")->addr), "r-x");
  EXPECT_EQ(perms_at((*obj)->find_symbol("data_var")->addr), "rw-");
  auto rodata = (*obj)->section(".rodata.str1.1");
  ASSERT_TRUE(rodata);
  EXPECT_EQ(perms_at(rodata->lo.value), "r--");
  auto bss = reinterpret_cast<int* (*)()>((*obj)->find_symbol("addr_of_bss")->addr)();
  EXPECT_EQ(perms_at(reinterpret_cast<uint64_t>(bss)), "rw-");
  EXPECT_EQ(*bss, 0);
  EXPECT_STREQ(reinterpret_cast<const char* (*)()>((*obj)->find_symbol("greeting")->addr)(), "hello");
}

const std::set<std::string, std::less<>> kCxxRuntime = {
    "__cxa_allocate_exception", "__cxa_throw", "__cxa_begin_catch", "__cxa_end_catch", "__cxa_free_exception",
    "_ZTIi", "__gxx_personality_v0", "_Unwind_Resume", "__cxa_rethrow", "_ZSt9terminatev", "__cxa_call_unexpected"};

TEST_F(LoaderTest, ExceptionThrownAndCaughtThroughPatchCode) {
  auto path = compile("exceptions", R"(
    __attribute__((noinline)) static void raise_it(int x) { if (x >= 0) throw x * 2; }
    extern "C" int catch_inside(int x) {
      try { raise_it(x); } catch (int v) { return v + 1; }
      return -1;
    }
    extern "C" void throw_out(int x) { raise_it(x); }
  )", Lang::cxx);
  auto opts = options(path);
  opts.dlsym_names = kCxxRuntime;
  auto obj = load_object(opts);
  ASSERT_TRUE(obj) << obj.error().describe();
  ASSERT_TRUE((*obj)->eh_frame().has_value());
  ASSERT_TRUE((*obj)->eh_frame_registered()) << "this C++ test has libgcc_s: its __register_frame must have been found";
  auto inside = reinterpret_cast<int (*)(int)>((*obj)->find_symbol("catch_inside")->addr);
  auto out = reinterpret_cast<void (*)(int)>((*obj)->find_symbol("throw_out")->addr);
  EXPECT_EQ(inside(20), 41);
  EXPECT_EQ(inside(-1), -1);
  // Unwinding from patch code into the host's frames.
  int caught = 0;
  try {
    out(4);
  } catch (int v) {
    caught = v;
  }
  EXPECT_EQ(caught, 8);
}

TEST_F(LoaderTest, ConstructorsRunOnceAndDestructorsAtUnload) {
  auto path = compile("ctors", R"(
    extern int lg_host_init_seen;
    __attribute__((constructor)) static void init(void) { lg_host_init_seen += 42; }
    __attribute__((destructor)) static void fini(void) { lg_host_init_seen = 7; }
    int dummy(void) { return 0; }
  )");
  auto opts = options(path);
  opts.symbols["lg_host_init_seen"] = reinterpret_cast<uint64_t>(&lg_host_init_seen);
  lg_host_init_seen = 0;
  {
    auto obj = load_object(opts);
    ASSERT_TRUE(obj) << obj.error().describe();
    EXPECT_EQ(lg_host_init_seen, 0) << "constructors must wait for run_constructors()";
    (*obj)->run_constructors();
    (*obj)->run_constructors();
    EXPECT_EQ(lg_host_init_seen, 42);
  }
  EXPECT_EQ(lg_host_init_seen, 7);
}

TEST_F(LoaderTest, MissingSymbolFailsWithoutLeavingMappings) {
  auto path = compile("missing", R"(
    extern int lg_symbol_nobody_defines(int);
    int call_missing(int x) { return lg_symbol_nobody_defines(x) + 1; }
  )");
  auto opts = options(path);
  // Warm up the allocator so that the comparison below sees only the loader's own mappings.
  (void)load_object(opts);
  std::string before = self_maps_text();
  auto obj = load_object(opts);
  std::string after = self_maps_text();
  ASSERT_FALSE(obj);
  EXPECT_EQ(obj.error().kind, ErrorKind::not_found);
  EXPECT_NE(obj.error().message.find("lg_symbol_nobody_defines"), std::string::npos) << obj.error().message;
  EXPECT_EQ(before, after);
}

TEST_F(LoaderTest, FarDataReferenceIsRefusedWithSymbolAndRelocation) {
  auto path = compile("far_data", R"(
    extern int far_var __attribute__((visibility("hidden")));
    int read_far(void) { return far_var; }
  )");
  auto opts = options(path);
  opts.symbols["far_var"] = reinterpret_cast<uint64_t>(dlsym(RTLD_DEFAULT, "getpid"));  // in libc: far from a PIE executable
  std::string before = self_maps_text();
  auto obj = load_object(opts);
  ASSERT_FALSE(obj);
  EXPECT_EQ(obj.error().kind, ErrorKind::unsupported);
  EXPECT_NE(obj.error().message.find("far_var"), std::string::npos) << obj.error().message;
  EXPECT_NE(obj.error().message.find("R_X86_64_PC32"), std::string::npos) << obj.error().message;
  EXPECT_NE(obj.error().message.find(".text"), std::string::npos) << obj.error().message;
  EXPECT_EQ(before, self_maps_text());
}

TEST_F(LoaderTest, UnknownRelocationIsRefused) {
  auto path = compile("unknown_reloc", R"(
    .text
    .globl f
    f:
    .reloc ., R_X86_64_SIZE32, some_symbol
    .long 0
    ret
  )", Lang::assembler);
  auto obj = load_object(options(path));
  ASSERT_FALSE(obj);
  EXPECT_EQ(obj.error().kind, ErrorKind::unsupported);
  EXPECT_NE(obj.error().message.find("R_X86_64_SIZE32"), std::string::npos) << obj.error().message;
  EXPECT_NE(obj.error().message.find("some_symbol"), std::string::npos) << obj.error().message;
}

TEST_F(LoaderTest, ThreadLocalStorageIsRefused) {
  auto path = compile("tls", R"(
    __thread int per_thread;
    int get(void) { return per_thread; }
  )");
  auto obj = load_object(options(path));
  ASSERT_FALSE(obj);
  EXPECT_EQ(obj.error().kind, ErrorKind::unsupported);
  EXPECT_NE(obj.error().message.find("per_thread"), std::string::npos) << obj.error().message;
}

TEST_F(LoaderTest, IfuncDefinitionIsRefused) {
  auto path = compile("ifunc", R"(
    static int impl(void) { return 1; }
    static void *resolve(void) { return (void *)impl; }
    int chooser(void) __attribute__((ifunc("resolve")));
  )");
  auto obj = load_object(options(path));
  ASSERT_FALSE(obj);
  EXPECT_EQ(obj.error().kind, ErrorKind::unsupported);
  EXPECT_NE(obj.error().message.find("chooser"), std::string::npos) << obj.error().message;
}

TEST_F(LoaderTest, MalformedFilesAreRejected) {
  std::string p = dir_.path() + "/garbage.o";
  std::ofstream(p) << "this is not an ELF file at all, but it is long enough to have a header.....";
  auto obj = load_object(options(p));
  ASSERT_FALSE(obj);
  EXPECT_EQ(obj.error().kind, ErrorKind::bad_patch);
  auto missing = load_object(options(dir_.path() + "/nope.o"));
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().kind, ErrorKind::not_found);
}

// The controller passes the file it validated as a descriptor: the loader reads that, and the
// path only names the patch (here it names nothing at all).
TEST_F(LoaderTest, LoadsFromTheDescriptorNotThePath) {
  auto path = compile("by_fd", R"(
    int answer(void) { return 42; }
  )");
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  auto opts = options(dir_.path() + "/not-there.o");
  opts.fd = fd;
  auto obj = load_object(opts);
  ::close(fd);
  ASSERT_TRUE(obj) << obj.error().describe();
  EXPECT_EQ((*obj)->path(), dir_.path() + "/not-there.o");
  EXPECT_EQ(reinterpret_cast<int (*)()>((*obj)->find_symbol("answer")->addr)(), 42);
  // A descriptor of something else than a regular file is refused.
  int pipes[2];
  ASSERT_EQ(::pipe(pipes), 0);
  opts.fd = pipes[0];
  auto bad = load_object(opts);
  ::close(pipes[0]);
  ::close(pipes[1]);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().kind, ErrorKind::bad_patch);
}

// A corrupt .eh_frame never reaches the host's unwinder, and the failed load leaves nothing.
TEST_F(LoaderTest, CorruptEhFrameIsNotRegistered) {
  auto path = compile("bad_eh", R"(
    extern "C" void throw_out(int x) { if (x) throw x; }
  )", Lang::cxx);
  std::ifstream in(path, std::ios::binary);
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), {});
  auto parsed = elf::RelObject::parse(bytes, path);
  ASSERT_TRUE(parsed);
  int eh = parsed->find_section(".eh_frame");
  ASSERT_GT(eh, 0);
  uint64_t off = parsed->sections()[eh].hdr.sh_offset;
  std::string before = self_maps_text();
  for (uint32_t length : {0xfffffff0u, 0xffffffffu}) {
    auto copy = bytes;
    std::memcpy(copy.data() + off, &length, 4);
    std::string bad = dir_.path() + "/bad_eh_corrupt.o";
    std::ofstream(bad, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(copy.data()), static_cast<long>(copy.size()));
    auto opts = options(bad);
    opts.dlsym_names = kCxxRuntime;
    auto obj = load_object(opts);
    ASSERT_FALSE(obj) << "length " << length;
    EXPECT_NE(obj.error().message.find(".eh_frame"), std::string::npos) << obj.error().message;
    EXPECT_EQ(before, self_maps_text());
  }
  EXPECT_TRUE(plan_load(bytes, path)) << "the undamaged object plans";
}

TEST_F(LoaderTest, UnloadRemovesEveryMapping) {
  auto path = compile("unload", R"(
    #include <string.h>
    int f(const char *s) { return (int)strlen(s); }
  )");
  auto opts = options(path);
  opts.dlsym_names = {"strlen"};
  { auto warm = load_object(opts); }
  std::string before = self_maps_text();
  {
    auto obj = load_object(opts);
    ASSERT_TRUE(obj) << obj.error().describe();
    EXPECT_NE(before, self_maps_text());
  }
  EXPECT_EQ(before, self_maps_text());
}

}  // namespace
