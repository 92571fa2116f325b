#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <algorithm>
#include <cstdlib>
#include <fstream>

#include "builder/compile_commands.h"

using namespace lg::builder;
namespace fs = std::filesystem;

// Meson writes the compiler launcher it found (ccache) into compile_commands.json: the compile
// the builder reruns must start with the compiler, not with ccache (else `ccache -c cc ...`).
TEST(BuilderCompileCommands, LauncherBeforeTheCompilerIsDropped) {
  fs::path dir = fs::temp_directory_path() / ("lg-cc-test-" + std::to_string(getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "compile_commands.json") << R"([
    {"directory": ".", "file": "../lib/misc.c", "output": "lib/misc.c.o",
     "command": "ccache cc -Ilib -O2 -o lib/misc.c.o -c ../lib/misc.c"},
    {"directory": ".", "file": "a.cpp", "arguments": ["/usr/bin/sccache", "c++", "-c", "a.cpp"]},
    {"directory": ".", "file": "b.c", "command": "cc -c b.c"}
  ])";
  auto cc = read_compile_commands(dir / "compile_commands.json");
  fs::remove_all(dir);
  ASSERT_TRUE(cc.ok());
  ASSERT_EQ(cc->size(), 3u);
  EXPECT_EQ((*cc)[0].argv.front(), "cc");
  EXPECT_EQ((*cc)[0].argv.size(), 7u);
  EXPECT_FALSE((*cc)[0].one_step);
  EXPECT_EQ((*cc)[1].argv.front(), "c++");
  EXPECT_EQ((*cc)[2].argv.front(), "cc");
  EXPECT_EQ(object_command((*cc)[0], "/tmp/x.o").find("ccache"), std::string::npos);
}

// The units a changed header can affect: the files named in the unit's dependency file (-MF,
// or the object + ".d"), relative to the compile's directory; none without a dependency file.
TEST(BuilderCompileCommands, UnitDependenciesFromTheDependencyFile) {
  fs::path dir = fs::temp_directory_path() / ("lg-dep-test-" + std::to_string(getpid()));
  fs::create_directories(dir / "obj");
  std::ofstream(dir / "obj/misc.c.o.d") << "obj/misc.c.o: ../lib/misc.c ../jose/b64.h \\\n /usr/include/stdio.h \\\n"
                                           " ../a\\ b.h\n";
  CompileCommand meson{dir.string(), {"cc", "-MD", "-MQ", "obj/misc.c.o", "-MF", "obj/misc.c.o.d", "-c", "../lib/misc.c"},
                       (dir / "../lib/misc.c").lexically_normal().string(), (dir / "obj/misc.c.o").string(), false};
  auto deps = unit_dependencies(meson);
  ASSERT_TRUE(deps.has_value());
  std::vector<std::string> want = {(dir / "../lib/misc.c").lexically_normal().string(),
                                   (dir / "../jose/b64.h").lexically_normal().string(), "/usr/include/stdio.h",
                                   (dir / "../a b.h").lexically_normal().string()};
  EXPECT_EQ(*deps, want);
  // CMake: -MF names the same file as the object + ".d".
  CompileCommand cmake{dir.string(), {"cc", "-c", "x.c"}, (dir / "x.c").string(), (dir / "obj/misc.c.o").string(), false};
  EXPECT_EQ(unit_dependencies(cmake), deps);
  CompileCommand none{dir.string(), {"cc", "-c", "y.c"}, (dir / "y.c").string(), (dir / "y.o").string(), false};
  EXPECT_FALSE(unit_dependencies(none).has_value());
  fs::remove_all(dir);
}

// Under Ninja (Meson; CMake's Ninja generator) the dependency file is gone after the build
// (`deps = gcc` moves it into .ninja_deps): the dependencies come from `ninja -t deps`.
TEST(BuilderCompileCommands, UnitDependenciesFromNinja) {
  if (std::system("ninja --version >/dev/null 2>&1") != 0) GTEST_SKIP() << "no ninja";
  fs::path dir = fs::temp_directory_path() / ("lg-ninja-test-" + std::to_string(getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "x.h") << "int x(void);\n";
  std::ofstream(dir / "x.c") << "#include \"x.h\"\nint x(void) { return 1; }\n";
  std::ofstream(dir / "build.ninja") << "rule cc\n  command = cc -MD -MF $out.d -c $in -o $out\n  depfile = $out.d\n"
                                        "  deps = gcc\nbuild x.o: cc x.c\n";
  ASSERT_EQ(std::system(("ninja -C " + dir.string() + " >/dev/null").c_str()), 0);
  ASSERT_FALSE(fs::exists(dir / "x.o.d"));
  CompileCommand c{dir.string(), {"cc", "-MD", "-MF", "x.o.d", "-c", "x.c", "-o", "x.o"}, (dir / "x.c").string(),
                   (dir / "x.o").string(), false};
  auto deps = unit_dependencies(c);
  ASSERT_TRUE(deps.has_value());
  EXPECT_NE(std::find(deps->begin(), deps->end(), (dir / "x.c").string()), deps->end());
  EXPECT_NE(std::find(deps->begin(), deps->end(), (dir / "x.h").string()), deps->end());
  // An object ninja never built: no dependencies known.
  CompileCommand other{dir.string(), {"cc", "-c", "y.c", "-o", "y.o"}, (dir / "y.c").string(), (dir / "y.o").string(), false};
  EXPECT_FALSE(unit_dependencies(other).has_value());
  fs::remove_all(dir);
}
