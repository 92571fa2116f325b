// read_patch_object() on patches compiled during the test from C and C++ sources, on patches
// that must be refused, and on truncated and corrupted objects.
#include "elf/patch_object.h"
#include "elf/elf_file.h"

#include <elf.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>

#include <stddef.h>
#include <livegraft/patch.h>

namespace lg {
namespace {

namespace fs = std::filesystem;

bool have_tool(const char* tool) { return std::system(fmt::format("command -v {} >/dev/null 2>&1", tool).c_str()) == 0; }

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& path, const uint8_t* data, size_t len) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(len));
}

class PatchObjectTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!have_tool("gcc") || !have_tool("g++")) GTEST_SKIP() << "gcc/g++ are needed to compile sample patches";
    char tmpl[] = "/tmp/lg-patch-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }

  // Compiles [source] (C when [file] ends in .c, else C++) into an object; returns its path.
  std::string compile(const std::string& file, const std::string& source, const std::string& flags = "-fPIC -O2") {
    std::ofstream(dir_ + "/" + file) << source;
    std::string obj = dir_ + "/" + file + ".o";
    bool c = file.ends_with(".c");
    std::string cmd = fmt::format("cd {} && {} {} -c {} -I{}/include -o {} 2>{}/{}.log", dir_, c ? "gcc" : "g++", flags,
                                  file, LG_SOURCE_DIR, obj, dir_, file);
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    return obj;
  }

  // The error of read_patch_object(), failing the test when it succeeds.
  Error refusal(const std::string& path) {
    auto r = read_patch_object(path);
    EXPECT_FALSE(r.ok()) << path << " was accepted";
    return r.ok() ? Error() : r.error();
  }

  std::string dir_;
};

constexpr const char* kValidC = R"(
#include <stddef.h>
#include <livegraft/patch.h>
#include <stdio.h>
static int counter;
extern int target_static_var;
extern int maybe_there __attribute__((weak));
static int fixed(int x) { counter++; printf("x=%d\n", x); return x * 2 + target_static_var + (&maybe_there ? 1 : 0); }
static int fixed_helper(void) { return 42; }
static struct livegraft_func funcs[] = {
    LIVEGRAFT_FUNC("compute", fixed),
    LIVEGRAFT_FUNC_POS("helper", 2, fixed_helper),
};
static struct livegraft_object objects[] = { LIVEGRAFT_OBJECT(LIVEGRAFT_MAIN_EXECUTABLE, NULL, funcs) };
LIVEGRAFT_PATCH("fix-compute_1.0", 0, objects);
)";

// The prefix of a patch with a hand-written root: funcs and one object.
constexpr const char* kRootlessC = R"(
#include <stddef.h>
#include <livegraft/patch.h>
static int fixed(int x) { return x + 1; }
static struct livegraft_func funcs[] = { LIVEGRAFT_FUNC("compute", fixed) };
)";

TEST_F(PatchObjectTest, ValidCPatchIsReadFully) {
  auto r = read_patch_object(compile("valid.c", kValidC));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->name, "fix-compute_1.0");
  EXPECT_EQ(r->flags, 0u);
  ASSERT_EQ(r->objects.size(), 1u);
  const PatchTargetObject& o = r->objects[0];
  EXPECT_FALSE(o.name.has_value());
  EXPECT_FALSE(o.build_id.has_value());
  ASSERT_EQ(o.funcs.size(), 2u);
  EXPECT_EQ(o.funcs[0].old_name, "compute");
  EXPECT_EQ(o.funcs[0].old_sympos, 0u);
  EXPECT_EQ(o.funcs[0].new_symbol, "fixed");
  EXPECT_GT(o.funcs[0].new_size, 0u);
  EXPECT_EQ(o.funcs[1].old_name, "helper");
  EXPECT_EQ(o.funcs[1].old_sympos, 2u);
  EXPECT_EQ(o.funcs[1].new_symbol, "fixed_helper");
  EXPECT_NE(o.funcs[0].new_offset, o.funcs[1].new_offset);

  // The new functions' sections and offsets agree with the symbol table.
  auto elf = ElfFile::open(r->path);
  ASSERT_TRUE(elf.ok());
  for (const PatchFunc& f : o.funcs) {
    auto sym = elf->find_symbol(f.new_symbol);
    ASSERT_TRUE(sym.ok()) << sym.error().message;
    EXPECT_EQ(sym->shndx, f.new_section);
    EXPECT_EQ(sym->value, f.new_offset);
    EXPECT_EQ(sym->size, f.new_size);
  }

  auto has_undef = [&](const std::string& n) {
    return std::find_if(r->undefined.begin(), r->undefined.end(), [&](auto& u) { return u.name == n; });
  };
  ASSERT_NE(has_undef("printf"), r->undefined.end());
  EXPECT_FALSE(has_undef("printf")->weak);
  ASSERT_NE(has_undef("target_static_var"), r->undefined.end());
  ASSERT_NE(has_undef("maybe_there"), r->undefined.end());
  EXPECT_TRUE(has_undef("maybe_there")->weak);
  EXPECT_EQ(has_undef("_GLOBAL_OFFSET_TABLE_"), r->undefined.end());
  EXPECT_EQ(has_undef(""), r->undefined.end());
  EXPECT_NE(std::find(r->relocation_types.begin(), r->relocation_types.end(), R_X86_64_64), r->relocation_types.end());
  for (uint32_t t : r->relocation_types) EXPECT_TRUE(supported_relocation(t)) << relocation_name(t);
}

TEST_F(PatchObjectTest, ValidCxxPatchWithExceptionsAndStaticLocals) {
  const char* src = R"(
#include <stddef.h>
#include <livegraft/patch.h>
#include <stdexcept>
#include <string>
struct Account { int balance; int deposit(int x); };
// A member function's replacement is a free function taking `this` explicitly.
int fixed_deposit(Account* self, int x) {
  static std::string last = "init";
  if (x < 0) throw std::invalid_argument("negative");
  last = std::to_string(x);
  return self->balance += x;
}
static struct livegraft_func funcs[] = { LIVEGRAFT_FUNC_POS("_ZN7Account7depositEi", 1, fixed_deposit) };
static struct livegraft_object objects[] = {
    LIVEGRAFT_OBJECT("libbank.so.1", "5f0c3e2a9b7d41e6a8c0f1b2d3e4f5a6b7c8d9e0", funcs) };
LIVEGRAFT_PATCH("bank", 0, objects);
)";
  for (const char* opt : {"-O0", "-O2"}) {
    auto r = read_patch_object(compile(fmt::format("bank{}.cpp", opt), src, fmt::format("-fPIC {} -std=c++20", opt)));
    ASSERT_TRUE(r.ok()) << opt << ": " << r.error().message;
    EXPECT_EQ(r->name, "bank");
    EXPECT_EQ(r->flags, 0u);
    ASSERT_EQ(r->objects.size(), 1u);
    EXPECT_EQ(r->objects[0].name.value_or(""), "libbank.so.1");
    EXPECT_EQ(r->objects[0].build_id.value_or(""), "5f0c3e2a9b7d41e6a8c0f1b2d3e4f5a6b7c8d9e0");
    ASSERT_EQ(r->objects[0].funcs.size(), 1u);
    EXPECT_EQ(r->objects[0].funcs[0].old_name, "_ZN7Account7depositEi");
    EXPECT_EQ(r->objects[0].funcs[0].old_sympos, 1u);
    EXPECT_EQ(r->objects[0].funcs[0].new_symbol, "_Z13fixed_depositP7Accounti");
    auto undef = [&](const char* n) {
      return std::any_of(r->undefined.begin(), r->undefined.end(), [&](auto& u) { return u.name == n; });
    };
    EXPECT_TRUE(undef("__cxa_throw")) << opt;
    EXPECT_TRUE(undef("__gxx_personality_v0")) << opt;
    for (uint32_t t : r->relocation_types) EXPECT_TRUE(supported_relocation(t)) << relocation_name(t);
  }
}

TEST_F(PatchObjectTest, MissingLivegraftSectionIsRefused) {
  Error e = refusal(compile("plain.c", "int f(int x) { return x + 1; }\n"));
  EXPECT_EQ(e.kind, ErrorKind::bad_patch);
  EXPECT_NE(e.message.find("no .livegraft section"), std::string::npos) << e.message;
  EXPECT_NE(e.message.find("plain.c.o"), std::string::npos) << e.message;
}

TEST_F(PatchObjectTest, BadMagicIsRefused) {
  std::string src = std::string(kRootlessC) + R"(
static struct livegraft_object objects[] = { LIVEGRAFT_OBJECT(LIVEGRAFT_MAIN_EXECUTABLE, NULL, funcs) };
__attribute__((used, section(".livegraft"))) const struct livegraft_patch root =
    { 0x12345678u, LIVEGRAFT_LAYOUT_VERSION, 80, 0, 1, "p", objects, 0, 0, {0, 0, 0, 0} };
)";
  Error e = refusal(compile("magic.c", src));
  EXPECT_EQ(e.kind, ErrorKind::bad_patch);
  EXPECT_NE(e.message.find("magic 0x12345678"), std::string::npos) << e.message;
}

TEST_F(PatchObjectTest, OtherLayoutVersionIsRefusedNamingBoth) {
  std::string src = std::string(kRootlessC) + R"(
static struct livegraft_object objects[] = { LIVEGRAFT_OBJECT(LIVEGRAFT_MAIN_EXECUTABLE, NULL, funcs) };
__attribute__((used, section(".livegraft"))) const struct livegraft_patch root =
    { LIVEGRAFT_MAGIC, 7, 80, 0, 1, "p", objects, 0, 0, {0, 0, 0, 0} };
)";
  Error e = refusal(compile("version.c", src));
  EXPECT_EQ(e.kind, ErrorKind::unsupported);
  EXPECT_NE(e.message.find("layout version 7"), std::string::npos) << e.message;
  EXPECT_NE(e.message.find("reads layout versions 1 to 2"), std::string::npos) << e.message;
}

// A patch built before layout version 2: its 72-byte object (a zero `reserved` where version 2
// has `syms`, no nr_syms) is read as a version-2 one without bound symbols.
TEST_F(PatchObjectTest, LayoutVersionOnePatchIsStillRead) {
  std::string src = std::string(kRootlessC) + R"(
struct v1_object { const char *name, *build_id; const struct livegraft_func *funcs; uint64_t nr_funcs;
                   struct livegraft_callbacks callbacks; uint64_t reserved; };
_Static_assert(sizeof(struct v1_object) == 72, "version 1 object");
static const struct v1_object objects[] = { { 0, 0, funcs, 1, { 0, 0, 0, 0 }, 0 } };
__attribute__((used, section(".livegraft"))) const struct livegraft_patch root =
    { LIVEGRAFT_MAGIC, 1, 80, 0, 1, "old", (const struct livegraft_object *)objects, 0, 0, {0, 0, 0, 0} };
)";
  auto r = read_patch_object(compile("v1.c", src));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->version, 1u);
  ASSERT_EQ(r->objects.size(), 1u);
  ASSERT_EQ(r->objects[0].funcs.size(), 1u);
  EXPECT_EQ(r->objects[0].funcs[0].old_name, "compute");
  EXPECT_TRUE(r->objects[0].syms.empty());
}

// livegraft_sym: an undefined symbol of the patch bound to one definition of a target name.
TEST_F(PatchObjectTest, BoundSymbolsAreReadAndMustBeUndefinedSymbolsOfThePatch) {
  const std::string head = R"(
#include <stddef.h>
#include <livegraft/patch.h>
extern int counter_of_b;  /* gas cannot name "counter,2" (the builder's form), any name will do */
static int fixed(int x) { return x + counter_of_b; }
static struct livegraft_func funcs[] = { LIVEGRAFT_FUNC("compute", fixed) };
)";
  const std::string tail = R"(
static struct livegraft_object objects[] = { LIVEGRAFT_OBJECT_SYMS(LIVEGRAFT_MAIN_EXECUTABLE, NULL, funcs, syms) };
LIVEGRAFT_PATCH("bound", 0, objects);
)";
  auto r = read_patch_object(compile("bound.c", head + R"(static struct livegraft_sym syms[] = { LIVEGRAFT_SYM("counter_of_b", "counter", 2) };)" + tail));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->version, LIVEGRAFT_LAYOUT_VERSION);
  ASSERT_EQ(r->objects[0].syms.size(), 1u);
  EXPECT_EQ(r->objects[0].syms[0].name, "counter_of_b");
  EXPECT_EQ(r->objects[0].syms[0].old_name, "counter");
  EXPECT_EQ(r->objects[0].syms[0].old_sympos, 2u);
  ASSERT_NE(r->objects[0].sym("counter_of_b"), nullptr);

  Error e = refusal(compile("unbound.c", head + R"(static struct livegraft_sym syms[] = { LIVEGRAFT_SYM("nothing", "counter", 2) };)" + tail));
  EXPECT_EQ(e.kind, ErrorKind::bad_patch);
  EXPECT_NE(e.message.find("binds 'nothing', which is not an undefined symbol of the patch"), std::string::npos) << e.message;
  e = refusal(compile("twice.c", head + R"(static struct livegraft_sym syms[] = { LIVEGRAFT_SYM("counter_of_b", "counter", 2), LIVEGRAFT_SYM("counter_of_b", "counter", 1) };)" + tail));
  EXPECT_NE(e.message.find("binds 'counter_of_b' twice"), std::string::npos) << e.message;
  e = refusal(compile("flags.c", head + R"(static struct livegraft_sym syms[] = { { "counter_of_b", "counter", 2, 4 } };)" + tail));
  EXPECT_NE(e.message.find("flags is 0x4"), std::string::npos) << e.message;
}

TEST_F(PatchObjectTest, ThreadLocalStorageIsRefused) {
  std::string defined = std::string(R"(
#include <stddef.h>
#include <livegraft/patch.h>
static __thread int calls;
static int fixed(int x) { return x + ++calls; }
static struct livegraft_func funcs[] = { LIVEGRAFT_FUNC("compute", fixed) };
static struct livegraft_object objects[] = { LIVEGRAFT_OBJECT(LIVEGRAFT_MAIN_EXECUTABLE, NULL, funcs) };
LIVEGRAFT_PATCH("tls", 0, objects);
)");
  Error e = refusal(compile("tls.c", defined));
  EXPECT_EQ(e.kind, ErrorKind::unsupported);
  EXPECT_NE(e.message.find("thread-local storage is not supported in patches (symbol calls"), std::string::npos)
      << e.message;

  std::string referenced = defined;
  referenced.replace(referenced.find("static __thread int calls;"), strlen("static __thread int calls;"),
                     "extern __thread int target_calls;");
  referenced.replace(referenced.find("++calls"), strlen("++calls"), "++target_calls");
  Error e2 = refusal(compile("tls_extern.c", referenced));
  EXPECT_EQ(e2.kind, ErrorKind::unsupported);
  EXPECT_NE(e2.message.find("thread-local storage is not supported in patches (symbol target_calls"),
            std::string::npos)
      << e2.message;
}

TEST_F(PatchObjectTest, IfuncDefinitionIsRefused) {
  std::string src = std::string(kRootlessC) + R"(
static int impl(void) { return 1; }
static int (*resolve(void))(void) { return impl; }
int picked(void) __attribute__((ifunc("resolve")));
static struct livegraft_object objects[] = { LIVEGRAFT_OBJECT(LIVEGRAFT_MAIN_EXECUTABLE, NULL, funcs) };
LIVEGRAFT_PATCH("ifunc", 0, objects);
)";
  Error e = refusal(compile("ifunc.c", src));
  EXPECT_EQ(e.kind, ErrorKind::unsupported);
  EXPECT_NE(e.message.find("IFUNC"), std::string::npos) << e.message;
  EXPECT_NE(e.message.find("picked"), std::string::npos) << e.message;
}

TEST_F(PatchObjectTest, LargeCodeModelRelocationsAreRefused) {
  Error e = refusal(compile("large.c", kValidC, "-fPIC -O2 -mcmodel=large"));
  EXPECT_EQ(e.kind, ErrorKind::unsupported);
  EXPECT_NE(e.message.find("is not supported by the livegraft loader"), std::string::npos) << e.message;
  EXPECT_NE(e.message.find("R_X86_64_"), std::string::npos) << e.message;
}

TEST_F(PatchObjectTest, HandPatchedRelocationTypeIsRefused) {
  std::string obj = compile("reloc.c", kValidC);
  auto elf = ElfFile::open(obj);
  ASSERT_TRUE(elf.ok());
  const ElfSection* rela = elf->section_by_name(".rela.text");
  ASSERT_NE(rela, nullptr);
  uint64_t at = rela->offset + offsetof(Elf64_Rela, r_info);
  auto bytes = read_bytes(obj);
  bytes[at] = R_X86_64_GOT32;  // the low 32 bits of r_info are the type
  bytes[at + 1] = bytes[at + 2] = bytes[at + 3] = 0;
  write_bytes(obj, bytes.data(), bytes.size());
  Error e = refusal(obj);
  EXPECT_EQ(e.kind, ErrorKind::unsupported);
  EXPECT_NE(e.message.find("R_X86_64_GOT32"), std::string::npos) << e.message;
  EXPECT_NE(e.message.find(".text+0x"), std::string::npos) << e.message;
}

TEST_F(PatchObjectTest, TwoTargetObjectsAreRefused) {
  std::string src = std::string(kRootlessC) + R"(
static struct livegraft_object objects[] = {
    LIVEGRAFT_OBJECT(LIVEGRAFT_MAIN_EXECUTABLE, NULL, funcs),
    LIVEGRAFT_OBJECT("libz.so.1", NULL, funcs),
};
LIVEGRAFT_PATCH("two", 0, objects);
)";
  Error e = refusal(compile("two.c", src));
  EXPECT_EQ(e.kind, ErrorKind::unsupported);
  EXPECT_NE(e.message.find("2 target objects"), std::string::npos) << e.message;
  EXPECT_NE(e.message.find("one target object per patch"), std::string::npos) << e.message;
}

TEST_F(PatchObjectTest, CumulativeReplacePatchIsRefusedUntilSupported) {
  std::string src = std::string(kRootlessC) + R"(
static struct livegraft_object objects[] = { LIVEGRAFT_OBJECT(LIVEGRAFT_MAIN_EXECUTABLE, NULL, funcs) };
LIVEGRAFT_PATCH("cumulative", LIVEGRAFT_PATCH_REPLACE, objects);
)";
  Error e = refusal(compile("cumulative.c", src));
  EXPECT_EQ(e.kind, ErrorKind::unsupported);
  EXPECT_NE(e.message.find("LIVEGRAFT_PATCH_REPLACE"), std::string::npos) << e.message;
}

TEST_F(PatchObjectTest, MetadataMistakesAreRefused) {
  struct Case {
    const char* what;
    std::string tail;
    ErrorKind kind;
    const char* expect;
  };
  const std::string obj_main = "static struct livegraft_object objects[] = { LIVEGRAFT_OBJECT(LIVEGRAFT_MAIN_EXECUTABLE, NULL, funcs) };\n";
  std::vector<Case> cases = {
      {"bad name", obj_main + "LIVEGRAFT_PATCH(\"has space\", 0, objects);", ErrorKind::bad_patch, "patch name 'has space'"},
      {"upper-case build-id",
       "static struct livegraft_object objects[] = { LIVEGRAFT_OBJECT(NULL, \"ABCD\", funcs) };\n"
       "LIVEGRAFT_PATCH(\"p\", 0, objects);",
       ErrorKind::bad_patch, "build_id 'ABCD'"},
      {"no funcs",
       "static struct livegraft_object objects[] = { { NULL, NULL, funcs, 0, {0, 0, 0, 0}, 0 } };\n"
       "LIVEGRAFT_PATCH(\"p\", 0, objects);",
       ErrorKind::bad_patch, "no functions"},
      {"callbacks",
       "static int pre(void) { return 0; }\n"
       "static struct livegraft_object objects[] = { { NULL, NULL, funcs, 1, {pre, 0, 0, 0}, 0 } };\n"
       "LIVEGRAFT_PATCH(\"p\", 0, objects);",
       ErrorKind::unsupported, "callbacks.pre_patch"},
      {"nr_funcs too large",
       "static struct livegraft_object objects[] = { { NULL, NULL, funcs, 1000, {0, 0, 0, 0}, 0 } };\n"
       "LIVEGRAFT_PATCH(\"p\", 0, objects);",
       ErrorKind::bad_patch, "nr_funcs is 1000"},
      {"unknown flags", obj_main + "LIVEGRAFT_PATCH(\"p\", 0x80, objects);", ErrorKind::bad_patch, "unknown patch flags"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    Error e = refusal(compile(fmt::format("case{}.c", i), std::string(kRootlessC) + cases[i].tail + "\n"));
    EXPECT_EQ(e.kind, cases[i].kind) << cases[i].what << ": " << e.message;
    EXPECT_NE(e.message.find(cases[i].expect), std::string::npos) << cases[i].what << ": " << e.message;
  }
}

TEST_F(PatchObjectTest, NewFuncIntoDataIsRefused) {
  const char* src = R"(
#include <stddef.h>
#include <livegraft/patch.h>
static int not_code = 5;
static struct livegraft_func funcs[] = { LIVEGRAFT_FUNC("compute", &not_code) };
static struct livegraft_object objects[] = { LIVEGRAFT_OBJECT(LIVEGRAFT_MAIN_EXECUTABLE, NULL, funcs) };
LIVEGRAFT_PATCH("data", 0, objects);
)";
  Error e = refusal(compile("data.c", src));
  EXPECT_EQ(e.kind, ErrorKind::bad_patch);
  EXPECT_NE(e.message.find("not executable code"), std::string::npos) << e.message;
  EXPECT_NE(e.message.find("'compute'"), std::string::npos) << e.message;
}

TEST_F(PatchObjectTest, LinkedObjectIsRefused) {
  std::string obj = compile("linked.c", kValidC);
  std::string so = dir_ + "/linked.so";
  ASSERT_EQ(std::system(fmt::format("gcc -shared -o {} {} 2>/dev/null", so, obj).c_str()), 0);
  Error e = refusal(so);
  EXPECT_EQ(e.kind, ErrorKind::bad_patch);
  EXPECT_NE(e.message.find("ET_REL"), std::string::npos) << e.message;
}

TEST_F(PatchObjectTest, NotElfAndMissingFilesAreRefused) {
  std::ofstream(dir_ + "/text.o") << "not an object\n";
  EXPECT_EQ(refusal(dir_ + "/text.o").kind, ErrorKind::bad_patch);
  EXPECT_EQ(refusal(dir_ + "/missing.o").kind, ErrorKind::not_found);
}

TEST_F(PatchObjectTest, EveryTruncationIsACleanError) {
  std::string obj = compile("trunc.c", kValidC);
  auto bytes = read_bytes(obj);
  ASSERT_GT(bytes.size(), 512u);
  std::string cut = dir_ + "/cut.o";
  size_t step = std::max<size_t>(1, bytes.size() / 400);
  for (size_t len = 0; len < bytes.size(); len += (len < 256 ? 1 : step)) {
    write_bytes(cut, bytes.data(), len);
    auto r = read_patch_object(cut);
    ASSERT_FALSE(r.ok()) << "a truncation to " << len << " of " << bytes.size() << " bytes was accepted";
    EXPECT_FALSE(r.error().message.empty());
  }
}

TEST_F(PatchObjectTest, RandomCorruptionNeverCrashes) {
  std::string obj = compile("fuzz.cpp",
                            "#include <livegraft/patch.h>\n#include <string>\n"
                            "std::string fixed(const std::string& s) { static int n; return s + std::to_string(++n); }\n"
                            "static struct livegraft_func funcs[] = { LIVEGRAFT_FUNC(\"_Z5parseRKSs\", fixed) };\n"
                            "static struct livegraft_object objects[] = { LIVEGRAFT_OBJECT(\"libx.so\", NULL, funcs) };\n"
                            "LIVEGRAFT_PATCH(\"fuzz\", 0, objects);\n");
  const auto original = read_bytes(obj);
  ASSERT_TRUE(read_patch_object(obj).ok());
  std::mt19937_64 rng(20240601);  // fixed seed: the same corruptions on every run
  std::string bad = dir_ + "/bad.o";
  size_t accepted = 0;
  for (int round = 0; round < 800; ++round) {
    auto bytes = original;
    int flips = 1 + static_cast<int>(rng() % 8);
    for (int i = 0; i < flips; ++i) {
      // Half of the flips hit the ELF and section headers, where damage is most interesting.
      size_t hot = rng() % 2 ? 64 : bytes.size();
      size_t at = rng() % 2 ? rng() % hot : bytes.size() - 1 - rng() % std::min<size_t>(bytes.size(), 1024);
      bytes[at] ^= static_cast<uint8_t>(1 + rng() % 255);
    }
    write_bytes(bad, bytes.data(), bytes.size());
    auto r = read_patch_object(bad);
    if (r.ok()) {
      ++accepted;
    } else {
      EXPECT_FALSE(r.error().message.empty());
    }
  }
  // Some flips land in bytes nobody reads (padding, .comment); most must be caught.
  EXPECT_LT(accepted, 800u);
}

TEST(PatchRelocations, SupportedListAndNames) {
  for (uint32_t t : std::initializer_list<uint32_t>{R_X86_64_NONE, R_X86_64_64, R_X86_64_PC32, R_X86_64_PLT32, R_X86_64_32, R_X86_64_32S,
                     R_X86_64_GOTPCREL, R_X86_64_GOTPCRELX, R_X86_64_REX_GOTPCRELX, R_X86_64_PC64,
                     R_X86_64_GOTPC32, R_X86_64_GOTPC64, R_X86_64_GOTOFF64})
    EXPECT_TRUE(supported_relocation(t)) << relocation_name(t);
  for (uint32_t t : std::initializer_list<uint32_t>{R_X86_64_TPOFF32, R_X86_64_GOTTPOFF, R_X86_64_TLSGD, R_X86_64_PLTOFF64,
                     R_X86_64_COPY, R_X86_64_IRELATIVE, R_X86_64_GOT64, 200})
    EXPECT_FALSE(supported_relocation(t)) << relocation_name(t);
  EXPECT_STREQ(relocation_name(R_X86_64_PLT32), "R_X86_64_PLT32");
  EXPECT_STREQ(relocation_name(R_X86_64_REX_GOTPCRELX), "R_X86_64_REX_GOTPCRELX");
  EXPECT_STREQ(relocation_name(R_X86_64_GOTPC64), "R_X86_64_GOTPC64");
  EXPECT_STREQ(relocation_name(999), "R_X86_64_<unknown>");
}

}  // namespace
}  // namespace lg
