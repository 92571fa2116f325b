// How `livegraft build` finds what to rebuild and how: it runs the project's own incremental
// build on a fixed copy of the built tree with the compilers wrapped (by $PATH, so a Makefile's
// own CC keeps its flags), records what that build recompiles (generated sources included), and
// compiles those units as original and as fixed. Record-only mode first (compiles and links only
// create their outputs); the real build when that cannot stand in for it.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "run_command.h"

namespace fs = std::filesystem;

namespace {

using lg::builder_test::run;

const fs::path kLivegraft = fs::path(LG_BINARY_DIR) / "livegraft";

// One copy per test: ctest runs tests of the same project in parallel.
fs::path project_copy(const std::string& name) {
  const fs::path work =
      fs::path(LG_BINARY_DIR) / "builder-record" / ::testing::UnitTest::GetInstance()->current_test_info()->name() / name;
  fs::remove_all(work);
  fs::create_directories(work.parent_path());
  fs::copy(fs::path(LG_BUILDER_CASES) / "projects" / name, work, fs::copy_options::recursive);
  return work;
}

// Copies projects/<name> to the build tree, builds it with its Makefile, runs `livegraft build`
// against the built `target` (relative to the project); returns the build's exit status and output.
int build_patch(const std::string& name, std::string* out, const std::string& target = "prog",
                const std::string& extra = "") {
  const fs::path work = project_copy(name);
  if (int rc = run("make -C " + work.string(), out); rc != 0) return 100 + rc;
  return run(kLivegraft.string() + " build --source " + work.string() + " --diff " + (work / "fix.diff").string() +
                 " --target " + (work / target).string() + " -o " + (work / "fix.o").string() + " " + extra,
             out);
}

size_t count_lines(const fs::path& p) {
  std::ifstream in(p);
  size_t n = 0;
  for (std::string l; std::getline(in, l);) ++n;
  return n;
}

}  // namespace

#define REQUIRE_LIVEGRAFT() \
  if (!fs::exists(kLivegraft)) GTEST_SKIP() << "livegraft is not built"

TEST(BuilderRecord, MakefileOwnCompilerFlagsAreKept) {
  REQUIRE_LIVEGRAFT();
  std::string out;
  // Without -DSCALE=3 from the Makefile's CC the original would not even compile.
  ASSERT_EQ(build_patch("own-cc", &out), 0) << out;
  EXPECT_NE(out.find("record-only"), std::string::npos) << out;
  EXPECT_EQ(out.find("starting again with the real build"), std::string::npos) << out;
  EXPECT_NE(out.find("CHANGED scaled"), std::string::npos) << out;
}

// A build command of several commands: each runs with the wrapped compilers (the environment
// used to be a prefix of the first command only: squid's `make -C lib && make -C src` then
// compiled the fix for real, unrecorded, and "recompiled nothing").
TEST(BuilderRecord, EveryCommandOfABuildCommandListRunsWithTheWrappers) {
  REQUIRE_LIVEGRAFT();
  std::string out;
  ASSERT_EQ(build_patch("own-cc", &out, "prog", "--build-command 'true && make'"), 0) << out;
  EXPECT_NE(out.find("record-only"), std::string::npos) << out;
  EXPECT_EQ(out.find("starting again with the real build"), std::string::npos) << out;
  EXPECT_NE(out.find("CHANGED scaled"), std::string::npos) << out;
}

// The link step compiles a source file it writes and removes (libtool's .libs/squidS.c for a
// program linked with -dlopen): not in the tree, it cannot be compiled as the original and is
// left out (it used to fail the build: "compiling the original ... squidS.c failed").
TEST(BuilderRecord, SourceTheLinkWritesAndRemovesIsNotDiffed) {
  REQUIRE_LIVEGRAFT();
  std::string out;
  ASSERT_EQ(build_patch("link-time-source", &out), 0) << out;
  EXPECT_NE(out.find("progS.c is a temporary"), std::string::npos) << out;
  EXPECT_NE(out.find("CHANGED scaled"), std::string::npos) << out;
}

// make's built-in rule compiles and links in one command (`cc -O2 -g prog.c -o prog`).
TEST(BuilderRecord, OneStepCompileAndLinkOfMakesBuiltInRule) {
  REQUIRE_LIVEGRAFT();
  std::string out;
  ASSERT_EQ(build_patch("one-step", &out), 0) << out;
  EXPECT_NE(out.find("CHANGED answer\n"), std::string::npos) << out;
  EXPECT_EQ(out.find("CHANGED main"), std::string::npos) << out;
}

TEST(BuilderRecord, OneStepCommandInCompileCommandsJson) {
  REQUIRE_LIVEGRAFT();
  std::string out;
  ASSERT_EQ(build_patch("compile-db-one-step", &out), 0) << out;
  EXPECT_NE(out.find("using "), std::string::npos) << out;
  EXPECT_NE(out.find("CHANGED answer\n"), std::string::npos) << out;
}

// An autotools tree: config.h depends on ./configure. `make -B` would run configure again; the
// incremental build after the fix recompiles util.c only and never runs configure.
TEST(BuilderRecord, AutotoolsLikeTreeIsRebuiltIncrementallyWithoutRerunningConfigure) {
  REQUIRE_LIVEGRAFT();
  std::string out;
  const fs::path work_dir = fs::path(LG_BINARY_DIR) / "builder-record" / "autotools-like.work";
  fs::remove_all(work_dir);
  ASSERT_EQ(build_patch("autotools-like", &out, "prog", "--work-dir " + work_dir.string()), 0) << out;
  EXPECT_NE(out.find("1 unit(s) to diff: util.c"), std::string::npos) << out;
  EXPECT_NE(out.find("CHANGED util_value"), std::string::npos) << out;
  // One run: the original build's (the copy keeps the built tree's timestamps).
  EXPECT_EQ(count_lines(work_dir / "src" / "configure-runs.log"), 1u);
}

// libtool compiles each file twice (-fPIC -DPIC into .libs/ for the shared library, then again
// for the static archive); the patch of the shared library is built from the compile it links.
TEST(BuilderRecord, LibtoolLikeDoubleCompileUsesTheObjectLinkedIntoTheLibrary) {
  REQUIRE_LIVEGRAFT();
  std::string out;
  ASSERT_EQ(build_patch("libtool-like", &out, ".libs/libcount.so.1"), 0) << out;
  EXPECT_NE(out.find("CHANGED count_next"), std::string::npos) << out;
  EXPECT_EQ(out.find("not the one in the target"), std::string::npos) << out;
}

// The fix changes only the generator of a header: the build reruns it (the real build: the
// generator is compiled) and recompiles main.c, whose function uses the generated table.
TEST(BuilderRecord, FixOfAGeneratorRebuildsTheUnitsUsingItsOutput) {
  REQUIRE_LIVEGRAFT();
  std::string out;
  ASSERT_EQ(build_patch("generated", &out), 0) << out;
  EXPECT_NE(out.find("starting again with the real build"), std::string::npos) << out;
  EXPECT_NE(out.find("gen.c is recompiled but not linked into prog: skipped"), std::string::npos) << out;
  EXPECT_NE(out.find("CHANGED square"), std::string::npos) << out;
}

// The fix changes a template (config.h.in) that no compile names; sed regenerates config.h in
// record-only mode and the build recompiles main.c.
TEST(BuilderRecord, FixOfATemplateRebuildsTheUnitsIncludingTheGeneratedHeader) {
  REQUIRE_LIVEGRAFT();
  std::string out;
  ASSERT_EQ(build_patch("template", &out), 0) << out;
  EXPECT_EQ(out.find("starting again with the real build"), std::string::npos) << out;
  EXPECT_NE(out.find("1 unit(s) to diff: main.c"), std::string::npos) << out;
  EXPECT_NE(out.find("CHANGED scaled"), std::string::npos) << out;
}

// A fix that adds lines shifts every later __LINE__; kept as in the original (#line directives
// after each change, the one inside a comment moved below it), the patch holds only `check`.
TEST(BuilderLines, LinesAddedAboveUnchangedFunctionsDoNotMakeThemChanged) {
  REQUIRE_LIVEGRAFT();
  std::string out;
  ASSERT_EQ(build_patch("lines", &out), 0) << out;
  EXPECT_NE(out.find("CHANGED check\n"), std::string::npos) << out;
  EXPECT_EQ(out.find("later_a"), std::string::npos) << out;
  EXPECT_EQ(out.find("later_b"), std::string::npos) << out;
  EXPECT_NE(out.find("#line directive(s) keep the original line numbers"), std::string::npos) << out;
  // Without: the stored __LINE__ values differ, the LINE-ONLY rule cannot excuse them.
  ASSERT_EQ(build_patch("lines", &out, "prog", "--no-keep-line-numbers"), 0) << out;
  EXPECT_NE(out.find("CHANGED later_a"), std::string::npos) << out;
  EXPECT_NE(out.find("CHANGED later_b"), std::string::npos) << out;
}

TEST(BuilderTypeLayout, ChangedStructLayoutIsReportedWithItsMembersAndUsers) {
  REQUIRE_LIVEGRAFT();
  std::string out;
  ASSERT_EQ(build_patch("layout", &out), 0) << out;
  EXPECT_NE(out.find("CHANGED handle"), std::string::npos) << out;
  EXPECT_NE(out.find("CHANGED serve"), std::string::npos) << out;
  EXPECT_NE(out.find("warning: the fix changes the layout of struct request (8 -> 12 bytes)"), std::string::npos) << out;
  EXPECT_NE(out.find("short int flags at 4 (2 bytes) -> int flags at 4 (4 bytes)"), std::string::npos) << out;
  EXPECT_NE(out.find("+ int extra at 8 (4 bytes)"), std::string::npos) << out;
  EXPECT_NE(out.find("used by the patched handle, serve"), std::string::npos) << out;
  EXPECT_NE(out.find("objects of the old layout alive during the switch would be misread"), std::string::npos) << out;
}

namespace {

// `livegraft build` of projects/one-step with another diff (written into the copy).
int build_with_diff(const std::string& diff, std::string* out) {
  const fs::path work = project_copy("one-step");
  if (int rc = run("make -C " + work.string(), out); rc != 0) return 100 + rc;
  std::ofstream(work / "other.diff") << diff;
  return run(kLivegraft.string() + " build --source " + work.string() + " --diff " + (work / "other.diff").string() +
                 " --target " + (work / "prog").string() + " -o " + (work / "fix.o").string() + " --work-dir " +
                 (work.string() + ".work"),
             out);
}

}  // namespace

TEST(BuilderErrors, CompilerMessageIsInTheErrorOfAFixThatDoesNotCompile) {
  REQUIRE_LIVEGRAFT();
  std::string out;
  EXPECT_NE(build_with_diff("--- a/prog.c\n+++ b/prog.c\n@@ -4 +4 @@\n"
                            "-__attribute__((noinline)) int answer(int i) { return i * 2; }\n"
                            "+__attribute__((noinline)) int answer(int i) { return i * no_such_name; }\n",
                            &out),
            0);
  EXPECT_NE(out.find("error: "), std::string::npos) << out;
  EXPECT_NE(out.find("no_such_name"), std::string::npos) << out;  // gcc's own message, quotes as the locale has them
  EXPECT_NE(out.find("undeclared"), std::string::npos) << out;
}

TEST(BuilderErrors, PatchMessageIsInTheErrorOfADiffThatDoesNotApply) {
  REQUIRE_LIVEGRAFT();
  std::string out;
  EXPECT_NE(build_with_diff("--- a/prog.c\n+++ b/prog.c\n@@ -4 +4 @@\n"
                            "-int a_line_that_is_not_there(void);\n"
                            "+int another(void);\n",
                            &out),
            0);
  EXPECT_NE(out.find("does not apply"), std::string::npos) << out;
  EXPECT_NE(out.find("Hunk #1 FAILED"), std::string::npos) << out;
}

TEST(BuilderErrors, ChangedMainIsWarnedAtBuildTime) {
  REQUIRE_LIVEGRAFT();
  std::string out;
  ASSERT_EQ(build_with_diff("--- a/prog.c\n+++ b/prog.c\n@@ -8 +8 @@\n"
                            "-    printf(\"%d\\n\", answer(i));\n"
                            "+    printf(\"answer %d\\n\", answer(i));\n",
                            &out),
            0) << out;
  EXPECT_NE(out.find("CHANGED main"), std::string::npos) << out;
  EXPECT_NE(out.find("warning: prog.c: main is changed"), std::string::npos) << out;
}

// A tree where only the target was built (`make prog`, as `make memcached`): the fixed copy's
// `make` also compiles every unit of prog-debug, from the same sources under other object names.
// Those are not the target's units: only main.c, which the fix changes, is diffed (memcached: 26
// units and 60 s instead of 2 units and 11 s).
TEST(BuilderRecord, UnitsRecompiledOnlyForAnotherProgramOfTheTreeAreSkipped) {
  REQUIRE_LIVEGRAFT();
  const fs::path work = project_copy("two-programs");
  std::string out;
  ASSERT_EQ(run("make -C " + work.string() + " prog", &out), 0) << out;
  ASSERT_EQ(run(kLivegraft.string() + " build --source " + work.string() + " --diff " + (work / "fix.diff").string() +
                    " --target " + (work / "prog").string() + " -o " + (work / "fix.o").string(),
                &out),
            0) << out;
  EXPECT_NE(out.find("1 unit(s) to diff: main.c"), std::string::npos) << out;
  EXPECT_NE(out.find("util.c is recompiled for prog-debug, not for prog: skipped"), std::string::npos) << out;
  EXPECT_NE(out.find("CHANGED answer"), std::string::npos) << out;
}

// A thread's start function (passed to pthread_create) that the fix changes: the thread it starts
// has it on its stack for good, so apply could only time out on it (memcached's
// lru_maintainer_thread did, with a hint to "raise --timeout"). Said at build time, like main().
TEST(BuilderErrors, ChangedThreadStartFunctionIsWarnedAtBuildTime) {
  REQUIRE_LIVEGRAFT();
  std::string out;
  ASSERT_EQ(build_patch("thread-start", &out), 0) << out;
  EXPECT_NE(out.find("CHANGED maintainer"), std::string::npos) << out;
  EXPECT_NE(out.find("warning: prog.c: maintainer is changed: it is a thread's start function (start_maintainer "
                     "passes it to pthread_create)"),
            std::string::npos)
      << out;
}

// A function the fix changes that only *calls* pthread_create is no start function.
TEST(BuilderErrors, FunctionThatCallsPthreadCreateIsNotAStartFunction) {
  REQUIRE_LIVEGRAFT();
  const fs::path work = project_copy("thread-start");
  std::string out;
  ASSERT_EQ(run("make -C " + work.string(), &out), 0) << out;
  std::ofstream(work / "other.diff") << "--- a/prog.c\n+++ b/prog.c\n@@ -20 +20 @@\n"
                                        "-static __attribute__((noinline)) int start_maintainer(pthread_t *t) { return pthread_create(t, NULL, maintainer, NULL); }\n"
                                        "+static __attribute__((noinline)) int start_maintainer(pthread_t *t) { return pthread_create(t, NULL, maintainer, t) ? -1 : 0; }\n";
  ASSERT_EQ(run(kLivegraft.string() + " build --source " + work.string() + " --diff " + (work / "other.diff").string() +
                    " --target " + (work / "prog").string() + " -o " + (work / "fix.o").string(),
                &out),
            0) << out;
  EXPECT_NE(out.find("CHANGED "), std::string::npos) << out;
  EXPECT_EQ(out.find("thread's start function"), std::string::npos) << out;
}

// A variable of libc the target holds by a copy relocation (stdout, used by main) is
// `stdout@GLIBC_2.2.5` in .symtab but defined as `stdout` in .dynsym: a fix that uses it is not
// warned about. One the target never references (stderr) still is, naming the binary.
TEST(BuilderErrors, VariableTheTargetHoldsByCopyRelocationIsNotWarnedAbout) {
  REQUIRE_LIVEGRAFT();
  std::string out;
  ASSERT_EQ(build_with_diff("--- a/prog.c\n+++ b/prog.c\n@@ -4 +4 @@\n"
                            "-__attribute__((noinline)) int answer(int i) { return i * 2; }\n"
                            "+__attribute__((noinline)) int answer(int i) { fflush(stdout); return i * 3; }\n",
                            &out),
            0) << out;
  EXPECT_NE(out.find("CHANGED answer"), std::string::npos) << out;
  EXPECT_EQ(out.find("neither defines nor imports"), std::string::npos) << out;
  ASSERT_EQ(build_with_diff("--- a/prog.c\n+++ b/prog.c\n@@ -4 +4 @@\n"
                            "-__attribute__((noinline)) int answer(int i) { return i * 2; }\n"
                            "+__attribute__((noinline)) int answer(int i) { fflush(stderr); return i * 3; }\n",
                            &out),
            0) << out;
  EXPECT_NE(out.find("the patch uses stderr, which prog neither defines nor imports"), std::string::npos) << out;
}

// The build files name the tree by absolute path: the build runs with the copy mounted over the
// tree's path (a private mount namespace), so it sees the fix and recompiles prog.c.
TEST(BuilderRecord, BuildFilesWithAbsolutePathsToTheTreeSeeTheFixedCopy) {
  REQUIRE_LIVEGRAFT();
  std::string out;
  ASSERT_EQ(build_patch("absolute-paths", &out), 0) << out;
  if (out.find("the copy is mounted over") == std::string::npos)
    GTEST_SKIP() << "no mount namespace here (unshare refused): " << out;
  EXPECT_NE(out.find("CHANGED answer\n"), std::string::npos) << out;
}

// A project compiled with -ffunction-sections -fdata-sections already: its own object is the
// original (one compile instead of two).
TEST(BuilderSpeed, ProjectsOwnObjectIsTheOriginalWhenItHasTheSectionFlags) {
  REQUIRE_LIVEGRAFT();
  std::string out;
  ASSERT_EQ(build_patch("own-sections", &out), 0) << out;
  EXPECT_NE(out.find("the original is the project's own prog.o"), std::string::npos) << out;
  EXPECT_EQ(out.find("compiling the original and the fixed"), std::string::npos) << out;
  EXPECT_NE(out.find("CHANGED limit"), std::string::npos) << out;
}

// The project's object is not what the target was linked from (rebuilt with other flags after
// the link): the code verification says so, and the original is compiled after all.
TEST(BuilderSpeed, ProjectsOwnObjectThatIsNotTheTargetsCodeIsNotUsed) {
  REQUIRE_LIVEGRAFT();
  const fs::path work = project_copy("own-sections");
  std::string out;
  ASSERT_EQ(run("make -C " + work.string(), &out), 0) << out;
  ASSERT_EQ(run("cd " + work.string() + " && gcc -O0 -g -ffunction-sections -fdata-sections -c prog.c -o prog.o", &out), 0) << out;
  ASSERT_EQ(run(kLivegraft.string() + " build --source " + work.string() + " --diff " + (work / "fix.diff").string() +
                    " --target " + (work / "prog").string() + " -o " + (work / "fix.o").string(),
                &out), 0)
      << out;
  EXPECT_NE(out.find("the project's own object is not the code in the target; compiling the original"), std::string::npos) << out;
  EXPECT_NE(out.find("CHANGED limit"), std::string::npos) << out;
}

// C++: the fix makes a leaf throw. GCC recompiles its caller with a call-site entry for the call,
// so the caller is in the patch too, and nothing is left that would std::terminate (the warning
// for callers left in the target: tests/unit/builder_call_site_test.cpp).
TEST(BuilderExceptions, FixThatMakesALeafThrowAlsoReplacesTheCallerWhoseTableChanged) {
  REQUIRE_LIVEGRAFT();
  std::string out;
  ASSERT_EQ(build_patch("new-throw", &out), 0) << out;
  EXPECT_NE(out.find("CHANGED _Z5checkPK7Request"), std::string::npos) << out;
  EXPECT_NE(out.find("CHANGED _Z6handleB5cxx11PK7Request"), std::string::npos) << out;
  EXPECT_EQ(out.find("std::terminate"), std::string::npos) << out;
}
