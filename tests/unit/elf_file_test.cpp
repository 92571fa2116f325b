// ElfFile against real files: this test executable, the libc it runs with, and small programs
// compiled during the test.
#include "elf/elf_file.h"

#include <elf.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

namespace lg {
namespace {

namespace fs = std::filesystem;

extern "C" __attribute__((noinline, used)) int lg_elf_test_marker(int x) { return x * 7 + 3; }

std::string run(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  pclose(p);
  return out;
}

bool have_tool(const char* tool) { return std::system(fmt::format("command -v {} >/dev/null 2>&1", tool).c_str()) == 0; }

// `readelf -n` prints "Build ID: <hex>".
std::string readelf_build_id(const std::string& path) {
  std::string out = run("readelf -n '" + path + "' 2>/dev/null");
  auto pos = out.find("Build ID: ");
  if (pos == std::string::npos) return {};
  pos += strlen("Build ID: ");
  auto end = out.find_first_of(" \n", pos);
  return out.substr(pos, end - pos);
}

std::vector<uint8_t> file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

// The path of the mapped libc (the line of /proc/self/maps ending in libc.so.6).
std::string libc_path() {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    auto slash = line.find('/');
    if (slash == std::string::npos) continue;
    std::string path = line.substr(slash);
    if (fs::path(path).filename() == "libc.so.6") return path;
  }
  return {};
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/lg-elf-test-XXXXXX";
    path_ = mkdtemp(tmpl) ? tmpl : "";
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  void write(const std::string& name, const std::string& text) const { std::ofstream(path_ + "/" + name) << text; }

 private:
  std::string path_;
};

TEST(ElfFile, OpensItsOwnExecutable) {
  auto f = ElfFile::open("/proc/self/exe");
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_TRUE(f->is_x86_64());
  EXPECT_TRUE(f->header().e_type == ET_DYN || f->header().e_type == ET_EXEC);
  EXPECT_NE(f->section_by_name(".text"), nullptr);
  EXPECT_EQ(f->section_by_name(".no-such-section"), nullptr);
  EXPECT_FALSE(f->symbols().empty());
  for (size_t i = 0; i < f->symbols().size(); ++i) EXPECT_EQ(f->symbols()[i].index, i);
  EXPECT_FALSE(f->soname().has_value());  // executables have no DT_SONAME
}

TEST(ElfFile, BuildIdMatchesReadelf) {
  if (!have_tool("readelf")) GTEST_SKIP() << "readelf (binutils) is not installed";
  for (std::string path : {fs::read_symlink("/proc/self/exe").string(), libc_path()}) {
    ASSERT_FALSE(path.empty());
    auto f = ElfFile::open(path);
    ASSERT_TRUE(f.ok()) << f.error().message;
    std::string expected = readelf_build_id(path);
    if (expected.empty()) {
      EXPECT_FALSE(f->build_id().has_value()) << path;
    } else {
      EXPECT_EQ(f->build_id().value_or("<none>"), expected) << path;
    }
  }
}

TEST(ElfFile, BuildIdFromBytesEqualsBuildIdFromFile) {
  auto f = ElfFile::open("/proc/self/exe");
  ASSERT_TRUE(f.ok());
  auto m = ElfFile::from_bytes(file_bytes("/proc/self/exe"), "self");
  ASSERT_TRUE(m.ok()) << m.error().message;
  EXPECT_EQ(f->build_id(), m->build_id());
  EXPECT_EQ(m->path(), "self");
}

TEST(ElfFile, LibcSonameAndDynamicSymbols) {
  std::string path = libc_path();
  ASSERT_FALSE(path.empty());
  auto f = ElfFile::open(path);
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_EQ(f->soname().value_or("<none>"), "libc.so.6");
  EXPECT_FALSE(f->dynamic_symbols().empty());
  auto malloc_sym = f->find_symbol("malloc");
  ASSERT_TRUE(malloc_sym.ok()) << malloc_sym.error().message;
  EXPECT_EQ(malloc_sym->type, STT_FUNC);
  EXPECT_NE(malloc_sym->value, 0u);
  // The code at that address in the file is the code in memory (libc text is never written).
  auto maps = std::ifstream("/proc/self/maps");
  std::string line;
  uint64_t bias = 0;
  bool found = false;
  while (std::getline(maps, line)) {
    if (line.find(path) == std::string::npos) continue;
    unsigned long lo, hi, off;
    char perms[8];
    if (sscanf(line.c_str(), "%lx-%lx %4s %lx", &lo, &hi, perms, &off) != 4) continue;
    auto v = f->vaddr_of_offset(off);
    ASSERT_TRUE(v.has_value());
    bias = lo - *v;
    found = true;
    break;
  }
  ASSERT_TRUE(found);
  auto bytes = f->read_vaddr(malloc_sym->value, 16);
  ASSERT_TRUE(bytes.ok()) << bytes.error().message;
  EXPECT_EQ(std::memcmp(bytes->data(), reinterpret_cast<const void*>(bias + malloc_sym->value), 16), 0);
}

TEST(ElfFile, ReadVaddrMatchesTheFileAndTheRunningCode) {
  std::string exe = fs::read_symlink("/proc/self/exe").string();
  auto f = ElfFile::open(exe);
  ASSERT_TRUE(f.ok());
  auto sym = f->find_symbol("lg_elf_test_marker");
  ASSERT_TRUE(sym.ok()) << sym.error().message;
  EXPECT_EQ(sym->type, STT_FUNC);
  ASSERT_GE(sym->size, 4u);
  auto bytes = f->read_vaddr(sym->value, sym->size);
  ASSERT_TRUE(bytes.ok()) << bytes.error().message;
  // Against the file: the section that holds the address, at the matching file offset.
  const ElfSection* text = nullptr;
  for (const ElfSection& s : f->sections())
    if (s.type == SHT_PROGBITS && (s.flags & SHF_ALLOC) && sym->value >= s.addr && sym->value < s.addr + s.size) text = &s;
  ASSERT_NE(text, nullptr);
  auto raw = file_bytes(exe);
  uint64_t off = text->offset + (sym->value - text->addr);
  ASSERT_LE(off + sym->size, raw.size());
  EXPECT_TRUE(std::equal(bytes->begin(), bytes->end(), raw.begin() + off));
  // Against memory: the load bias from the mapping of file offset 0.
  auto section = f->section_data(text->index);
  ASSERT_TRUE(section.ok());
  EXPECT_EQ(std::memcmp(section->data() + (sym->value - text->addr), bytes->data(), bytes->size()), 0);
  auto seg0 = f->vaddr_of_offset(0);
  ASSERT_TRUE(seg0.has_value());
  uint64_t runtime = reinterpret_cast<uint64_t>(&lg_elf_test_marker);
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    unsigned long lo, hi, moff;
    char perms[8];
    if (line.find(exe) == std::string::npos || sscanf(line.c_str(), "%lx-%lx %4s %lx", &lo, &hi, perms, &moff) != 4 ||
        moff != 0)
      continue;
    EXPECT_EQ(lo - *seg0 + sym->value, runtime);
    EXPECT_EQ(std::memcmp(reinterpret_cast<const void*>(runtime), bytes->data(), bytes->size()), 0);
    break;
  }
  EXPECT_FALSE(f->read_vaddr(uint64_t{1} << 50, 4).ok());  // in no PT_LOAD
}

TEST(ElfFile, VaddrOfOffsetMapsEveryLoadSegment) {
  auto f = ElfFile::open("/proc/self/exe");
  ASSERT_TRUE(f.ok());
  for (const ElfSegment& p : f->segments()) {
    if (p.type != PT_LOAD) continue;
    EXPECT_EQ(f->vaddr_of_offset(p.offset + p.filesz / 2), p.vaddr + p.filesz / 2);
  }
  EXPECT_FALSE(f->vaddr_of_offset(uint64_t{1} << 60).has_value());
}

TEST(ElfFile, DuplicateLocalSymbolsAreSelectedBySympos) {
  if (!have_tool("gcc")) GTEST_SKIP() << "gcc is not installed";
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  dir.write("a.c", "__attribute__((noinline)) static int helper(void) { return 0x1111; }\n"
                   "int call_a(void) { return helper(); }\n");
  dir.write("b.c", "__attribute__((noinline)) static int helper(void) { return 0x2222; }\n"
                   "int call_b(void) { return helper(); }\n");
  dir.write("main.c", "int call_a(void); int call_b(void);\nint main(void) { return call_a() + call_b(); }\n");
  std::string exe = dir.path() + "/dup";
  ASSERT_EQ(std::system(fmt::format("cd {} && gcc -O1 -o dup a.c b.c main.c", dir.path()).c_str()), 0);
  auto f = ElfFile::open(exe);
  ASSERT_TRUE(f.ok()) << f.error().message;
  ASSERT_TRUE(f->has_symtab());

  auto ambiguous = f->find_symbol("helper");
  ASSERT_FALSE(ambiguous.ok());
  EXPECT_EQ(ambiguous.error().kind, ErrorKind::invalid_argument);
  EXPECT_NE(ambiguous.error().message.find("old_sympos"), std::string::npos) << ambiguous.error().message;
  EXPECT_NE(ambiguous.error().message.find("2 times"), std::string::npos) << ambiguous.error().message;

  auto first = f->find_symbol("helper", 1);
  auto second = f->find_symbol("helper", 2);
  ASSERT_TRUE(first.ok()) << first.error().message;
  ASSERT_TRUE(second.ok()) << second.error().message;
  EXPECT_NE(first->value, second->value);
  EXPECT_LT(first->index, second->index);
  // Symbol-table order is link order: a.c's helper first. mov eax, imm32 is b8 imm32.
  auto code_of = [&](const ElfSymbol& s) { return f->read_vaddr(s.value, s.size).value(); };
  const std::vector<uint8_t> mov_1111 = {0xb8, 0x11, 0x11, 0x00, 0x00}, mov_2222 = {0xb8, 0x22, 0x22, 0x00, 0x00};
  auto a = code_of(*first), b = code_of(*second);
  EXPECT_NE(std::search(a.begin(), a.end(), mov_1111.begin(), mov_1111.end()), a.end());
  EXPECT_NE(std::search(b.begin(), b.end(), mov_2222.begin(), mov_2222.end()), b.end());

  auto third = f->find_symbol("helper", 3);
  ASSERT_FALSE(third.ok());
  EXPECT_EQ(third.error().kind, ErrorKind::not_found);
  EXPECT_TRUE(f->find_symbol("call_a").ok());
  auto missing = f->find_symbol("no_such_function");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().kind, ErrorKind::not_found);
}

TEST(ElfFile, SonameAndBuildIdWithoutSectionHeaders) {
  if (!have_tool("gcc")) GTEST_SKIP() << "gcc is not installed";
  TempDir dir;
  dir.write("lib.c", "int foo(void) { return 1; }\n");
  ASSERT_EQ(std::system(fmt::format("cd {} && gcc -shared -fPIC -Wl,-soname,libfoo.so.3 -Wl,--build-id -o libfoo.so lib.c",
                                    dir.path()).c_str()),
            0);
  auto whole = ElfFile::open(dir.path() + "/libfoo.so");
  ASSERT_TRUE(whole.ok()) << whole.error().message;
  EXPECT_EQ(whole->soname().value_or("<none>"), "libfoo.so.3");
  ASSERT_TRUE(whole->build_id().has_value());
  // Drop the section header table (e_shoff = 0, e_shnum = 0): only the program headers remain,
  // as in a file mapped by the loader; DT_SONAME and the build-id come from PT_DYNAMIC/PT_NOTE.
  auto bytes = file_bytes(dir.path() + "/libfoo.so");
  Elf64_Ehdr eh;
  std::memcpy(&eh, bytes.data(), sizeof eh);
  eh.e_shoff = 0;
  eh.e_shnum = 0;
  eh.e_shstrndx = 0;
  std::memcpy(bytes.data(), &eh, sizeof eh);
  auto bare = ElfFile::from_bytes(std::move(bytes), "libfoo.so (no sections)");
  ASSERT_TRUE(bare.ok()) << bare.error().message;
  EXPECT_TRUE(bare->sections().empty());
  EXPECT_EQ(bare->soname().value_or("<none>"), "libfoo.so.3");
  EXPECT_EQ(bare->build_id(), whole->build_id());
}

TEST(ElfFile, NonElfAndMissingFilesFailCleanly) {
  TempDir dir;
  dir.write("text", "this is not an ELF file\n");
  auto t = ElfFile::open(dir.path() + "/text");
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.error().message.find("not an ELF file"), std::string::npos) << t.error().message;
  auto m = ElfFile::open(dir.path() + "/missing");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.error().kind, ErrorKind::not_found);
  EXPECT_FALSE(ElfFile::from_bytes({}, "empty").ok());
  EXPECT_FALSE(ElfFile::open(dir.path()).ok());  // a directory
}

TEST(ElfFile, TruncatedImagesNeverCrash) {
  auto whole = file_bytes("/proc/self/exe");
  ASSERT_GT(whole.size(), 4096u);
  for (size_t len : {size_t{1}, size_t{16}, size_t{63}, size_t{64}, size_t{200}, size_t{4096}, whole.size() / 2,
                     whole.size() - 1}) {
    std::vector<uint8_t> part(whole.begin(), whole.begin() + static_cast<long>(len));
    auto f = ElfFile::from_bytes(std::move(part), "truncated");
    if (!f.ok()) continue;
    for (const ElfSection& s : f->sections()) (void)f->section_data(s.index);
    (void)f->build_id();
    (void)f->soname();
    (void)f->find_symbol("main");
    (void)f->read_vaddr(f->header().e_entry, 64);
  }
}

TEST(ElfFile, MovedFromFileKeepsWorking) {
  auto f = ElfFile::open("/proc/self/exe");
  ASSERT_TRUE(f.ok());
  ElfFile moved = std::move(*f);
  EXPECT_TRUE(moved.is_x86_64());
  ElfFile assigned = std::move(moved);
  EXPECT_TRUE(assigned.find_symbol("lg_elf_test_marker").ok());
  EXPECT_TRUE(assigned.build_id().has_value());
}

}  // namespace
}  // namespace lg
