// Every bad input gets a clear error and leaves the target exactly as it was (same
// /proc/PID/maps, same behaviour).
#include <gtest/gtest.h>
#include <elf.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>

#include "harness.h"

namespace lg::e2e {
namespace {

struct Case {
  std::string patch;
  int exit_code;
  std::string message;
};

void expect_refused_and_untouched(Target& t, const std::string& patch, int exit_code, const std::string& message) {
  std::string before = t.maps();
  CliRun r = livegraft({"apply", std::to_string(t.pid()), patch});
  EXPECT_EQ(r.exit_code, exit_code) << r.err;
  EXPECT_NE(r.err.find(message), std::string::npos) << "stderr: " << r.err;
  EXPECT_EQ(t.maps(), before) << "the target's mappings changed";
  EXPECT_EQ(t.ask("c 5"), "51");
}

TEST(BadInput, WrongBuildId) {
  Target t(target_path("calc"));
  expect_refused_and_untouched(t, patch_path("bad_build_id"), 6, "build-id mismatch");
}

TEST(BadInput, MissingImportedSymbol) {
  Target t(target_path("calc"));
  expect_refused_and_untouched(t, patch_path("bad_missing_symbol"), 3, "livegraft_no_such_function");
}

TEST(BadInput, MissingTargetFunction) {
  Target t(target_path("calc"));
  expect_refused_and_untouched(t, patch_path("bad_missing_function"), 3, "livegraft_not_in_target");
}

TEST(BadInput, UnsupportedRelocation) {
  Target t(target_path("calc"));
  expect_refused_and_untouched(t, patch_path("bad_relocation"), 6, "R_X86_64_");
}

TEST(BadInput, CorruptAndTruncatedPatchFiles) {
  Target t(target_path("calc"));
  std::ifstream in(patch_path("calc_fix"), std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  ASSERT_GT(bytes.size(), 1000u);
  auto dir = std::filesystem::temp_directory_path() / ("lg-corrupt-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::string before = t.maps();
  for (size_t len : {size_t{0}, size_t{10}, size_t{64}, bytes.size() / 3, bytes.size() - 1}) {
    auto p = dir / ("trunc" + std::to_string(len) + ".o");
    std::ofstream(p, std::ios::binary).write(bytes.data(), static_cast<long>(len));
    CliRun r = livegraft({"apply", std::to_string(t.pid()), p.string()});
    EXPECT_EQ(r.exit_code, 6) << "length " << len << ": " << r.err;
    EXPECT_NE(r.err.find("livegraft: error:"), std::string::npos) << r.err;
  }
  std::string garbage = bytes;
  for (size_t i = 64; i < garbage.size(); i += 7) garbage[i] = static_cast<char>(garbage[i] ^ 0x5a);
  auto p = dir / "garbage.o";
  std::ofstream(p, std::ios::binary).write(garbage.data(), static_cast<long>(garbage.size()));
  CliRun r = livegraft({"apply", std::to_string(t.pid()), p.string()});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_LT(r.exit_code, 128) << "livegraft crashed: " << r.err;
  EXPECT_EQ(t.maps(), before);
  EXPECT_EQ(t.ask("c 5"), "51");
  std::filesystem::remove_all(dir);
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

// The header of section [name] of an ELF64 object held in [bytes] (the test's own minimal
// reader: the patches of the build are well-formed).
Elf64_Shdr section_header(const std::string& bytes, const std::string& name, size_t* index = nullptr) {
  Elf64_Ehdr eh;
  std::memcpy(&eh, bytes.data(), sizeof eh);
  auto shdr = [&](size_t i) {
    Elf64_Shdr h;
    std::memcpy(&h, bytes.data() + eh.e_shoff + i * sizeof h, sizeof h);
    return h;
  };
  Elf64_Shdr names = shdr(eh.e_shstrndx);
  for (size_t i = 1; i < eh.e_shnum; ++i) {
    Elf64_Shdr h = shdr(i);
    if (name == bytes.c_str() + names.sh_offset + h.sh_name) {
      if (index) *index = i;
      return h;
    }
  }
  ADD_FAILURE() << "no section " << name;
  return {};
}

// A scratch directory for corrupted copies of the build's patches.
struct Scratch {
  Scratch() : dir(std::filesystem::temp_directory_path() / ("lg-bad-" + std::to_string(getpid()))) {
    std::filesystem::create_directories(dir);
  }
  ~Scratch() { std::filesystem::remove_all(dir); }
  std::string write(const std::string& name, const std::string& bytes) const {
    auto p = (dir / name).string();
    std::ofstream(p, std::ios::binary).write(bytes.data(), static_cast<long>(bytes.size()));
    return p;
  }
  std::filesystem::path dir;
};

// A corrupt .eh_frame used to be registered with the host's unwinder ("applied"), and the C++
// host crashed in libgcc at its next throw. Now it is refused before anything is injected.
TEST(BadInput, CorruptEhFrameIsRefusedBeforeTheHostsUnwinderSeesIt) {
  Target t(target_path("thrower"));
  ASSERT_EQ(t.ask("p -1"), "caught negative or empty: -1");
  const std::string good = read_all(patch_path("thrower_fix"));
  Elf64_Shdr eh = section_header(good, ".eh_frame");
  ASSERT_GT(eh.sh_size, 16u);
  Scratch scratch;
  std::string before = t.maps();
  struct Damage {
    const char* name;
    std::function<void(std::string&)> apply;
  };
  std::vector<Damage> damages = {
      {"cie-length-fffffff0", [&](std::string& b) { b[eh.sh_offset] = '\xf0', b[eh.sh_offset + 1] = b[eh.sh_offset + 2] = b[eh.sh_offset + 3] = '\xff'; }},
      {"length-64-bit", [&](std::string& b) { std::memset(b.data() + eh.sh_offset, 0xff, 4); }},
      {"garbage", [&](std::string& b) {
         for (uint64_t i = 8; i < eh.sh_size; ++i) b[eh.sh_offset + i] = static_cast<char>(b[eh.sh_offset + i] ^ (0xa5 + i * 29));
       }},
  };
  for (const auto& d : damages) {
    std::string bytes = good;
    d.apply(bytes);
    CliRun r = livegraft({"apply", std::to_string(t.pid()), scratch.write(std::string(d.name) + ".o", bytes)});
    EXPECT_EQ(r.exit_code, 6) << d.name << ": " << r.err << r.out;
    EXPECT_NE(r.err.find(".eh_frame"), std::string::npos) << d.name << ": " << r.err;
    EXPECT_EQ(t.maps(), before) << d.name << ": the target's mappings changed";
    EXPECT_EQ(t.ask("p -1"), "caught negative or empty: -1") << d.name;  // still throws and catches
    EXPECT_EQ(t.ask("p 17"), "value 17") << d.name;
  }
}

// A .rela.text whose sh_type is damaged was silently ignored: the patch loaded without its
// relocations and the target crashed when the new code ran.
TEST(BadInput, DamagedRelocationSectionTypeIsRefused) {
  Target t(target_path("calc"));
  std::string bytes = read_all(patch_path("calc_fix"));
  size_t index = 0;
  section_header(bytes, ".rela.text", &index);
  Elf64_Ehdr eh;
  std::memcpy(&eh, bytes.data(), sizeof eh);
  uint32_t progbits = SHT_PROGBITS;
  std::memcpy(bytes.data() + eh.e_shoff + index * sizeof(Elf64_Shdr) + offsetof(Elf64_Shdr, sh_type), &progbits, 4);
  Scratch scratch;
  expect_refused_and_untouched(t, scratch.write("rela-type.o", bytes), 6, ".rela.text");
}

TEST(BadInput, SectionOutsideTheFileIsABadPatch) {
  Target t(target_path("calc"));
  std::string bytes = read_all(patch_path("calc_fix"));
  size_t index = 0;
  section_header(bytes, ".text", &index);
  Elf64_Ehdr eh;
  std::memcpy(&eh, bytes.data(), sizeof eh);
  uint64_t far = bytes.size() * 4;
  std::memcpy(bytes.data() + eh.e_shoff + index * sizeof(Elf64_Shdr) + offsetof(Elf64_Shdr, sh_offset), &far, 8);
  Scratch scratch;
  expect_refused_and_untouched(t, scratch.write("outside.o", bytes), 6, "lies outside the file");
}

// Damage only the agent's reader used to catch, after it had been injected (the target's maps
// changed): now the controller refuses it first.
TEST(BadInput, DamageTheAgentCaughtIsRefusedBeforeInjection) {
  Target t(target_path("calc"));
  const std::string good = read_all(patch_path("calc_fix"));
  Elf64_Ehdr eh;
  std::memcpy(&eh, good.data(), sizeof eh);
  size_t text = 0, rela = 0;
  section_header(good, ".text", &text);
  Elf64_Shdr rh = section_header(good, ".rela.text", &rela);
  auto shdr_field = [&](std::string& b, size_t i, size_t field) { return b.data() + eh.e_shoff + i * sizeof(Elf64_Shdr) + field; };
  Scratch scratch;
  struct Damage {
    const char* name;
    std::function<void(std::string&)> apply;
    const char* message;
  };
  std::vector<Damage> damages = {
      {"shentsize", [&](std::string& b) { b[offsetof(Elf64_Ehdr, e_shentsize)] = 60; }, "e_shentsize"},
      {"align", [&](std::string& b) { uint64_t a = 1 << 16; std::memcpy(shdr_field(b, text, offsetof(Elf64_Shdr, sh_addralign)), &a, 8); },
       "alignment 65536"},
      {"null-symbol", [&](std::string& b) {
         Elf64_Rela r;
         std::memcpy(&r, b.data() + rh.sh_offset, sizeof r);
         r.r_info = ELF64_R_INFO(0, ELF64_R_TYPE(r.r_info));
         std::memcpy(b.data() + rh.sh_offset, &r, sizeof r);
       }, "null symbol"},
  };
  for (const auto& d : damages) {
    std::string bytes = good;
    d.apply(bytes);
    SCOPED_TRACE(d.name);
    expect_refused_and_untouched(t, scratch.write(std::string(d.name) + ".o", bytes), 6, d.message);
  }
}

// Opening a FIFO for reading waits for a writer: the controller used to block forever.
TEST(BadInput, FifoAsPatchPathIsRefusedWithoutBlocking) {
  Target t(target_path("calc"));
  Scratch scratch;
  auto fifo = (scratch.dir / "fifo.o").string();
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  // A path that is not a regular file is a usage error (docs/cli.md: invalid_argument, exit 2).
  auto start = std::chrono::steady_clock::now();
  expect_refused_and_untouched(t, fifo, 2, "not a regular file");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30));
}

// TOCTOU: the agent used to reopen the patch path, so a file swapped after the controller's
// checks was loaded unchecked. The path here names different files for the controller and the
// target (/proc/self/fd/N is the controller's descriptor N, which the target does not have):
// it applies only if the agent loads what the controller opened and checked.
TEST(BadInput, AgentLoadsTheFileTheControllerCheckedNotThePath) {
  Target t(target_path("calc"));
  int fd = ::open(patch_path("calc_fix").c_str(), O_RDONLY);  // inherited by the controller
  ASSERT_GE(fd, 0);
  int high = ::fcntl(fd, F_DUPFD, 200);
  ::close(fd);
  ASSERT_GE(high, 200);
  std::string path = "/proc/self/fd/" + std::to_string(high);
  ASSERT_FALSE(std::filesystem::exists("/proc/" + std::to_string(t.pid()) + "/fd/" + std::to_string(high)));
  CliRun r = livegraft({"apply", std::to_string(t.pid()), path});
  ::close(high);
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  EXPECT_EQ(t.ask("c 5"), "52");
  CliRun s = livegraft({"--json", "status", std::to_string(t.pid())});
  EXPECT_NE(s.out.find(path), std::string::npos) << "the path is kept for display: " << s.out;
  ASSERT_EQ(livegraft({"revert", std::to_string(t.pid()), "calc-fix"}).exit_code, 0);
  EXPECT_EQ(t.ask("c 5"), "51");
}

TEST(BadInput, PidThatDoesNotExist) {
  pid_t pid = fork();
  if (pid == 0) _exit(0);
  waitpid(pid, nullptr, 0);  // a pid that existed a moment ago and is gone now
  CliRun r = livegraft({"apply", std::to_string(pid), patch_path("calc_fix")});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("no process"), std::string::npos) << r.err;
  CliRun s = livegraft({"--json", "status", std::to_string(pid)});
  EXPECT_EQ(s.exit_code, 3);
  EXPECT_EQ(s.json["kind"], "not_found");
}

TEST(BadInput, ProcessOwnedByAnotherUser) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to run the controller as another user";
  Target t(target_path("calc"));
  std::string before = t.maps();
  CliRun r = livegraft({"apply", std::to_string(t.pid()), patch_path("calc_fix")}, 65534);
  EXPECT_EQ(r.exit_code, 4) << r.err << r.out;
  EXPECT_NE(r.err.find("may not"), std::string::npos) << r.err;
  EXPECT_EQ(t.maps(), before);
  EXPECT_EQ(t.ask("c 5"), "51");
}

TEST(BadInput, ProcessAlreadyTraced) {
  Target t(target_path("calc"));
  // Another tracer: a child of ours that seizes the target and waits.
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  pid_t tracer = fork();
  if (tracer == 0) {
    char ok = ptrace(PTRACE_SEIZE, t.pid(), nullptr, nullptr) == 0 ? 'y' : 'n';
    (void)!write(ready[1], &ok, 1);
    pause();
    _exit(0);
  }
  char ok = 0;
  ASSERT_EQ(read(ready[0], &ok, 1), 1);
  ASSERT_EQ(ok, 'y');
  std::string before = t.maps();
  CliRun r = livegraft({"apply", std::to_string(t.pid()), patch_path("calc_fix")});
  EXPECT_EQ(r.exit_code, 5) << r.err;
  EXPECT_NE(r.err.find("already traced"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(std::to_string(tracer)), std::string::npos) << r.err;
  // The tracer's own name, not a guess at it as well ("by PID 9 (strace) (gdb? strace?)").
  std::string comm;
  std::getline(std::ifstream("/proc/" + std::to_string(tracer) + "/comm"), comm);
  EXPECT_NE(r.err.find("by PID " + std::to_string(tracer) + " (" + comm + ")\n"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("gdb? strace?"), std::string::npos) << r.err;
  kill(tracer, SIGKILL);
  waitpid(tracer, nullptr, 0);
  EXPECT_EQ(t.maps(), before);
  EXPECT_EQ(t.ask("c 5"), "51");
}

}  // namespace
}  // namespace lg::e2e
