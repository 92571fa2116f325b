// How `livegraft build` gets the project's compile commands without compile_commands.json: the
// build command runs with the compilers wrapped (by $PATH, so a Makefile's own CC keeps its
// flags), first as a record-only pass, then as the real build when the record-only pass cannot
// stand in for it (a build that runs a program it compiled).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <filesystem>
#include <string>

#include "run_command.h"

namespace fs = std::filesystem;

namespace {

using lg::builder_test::run;

// Copies projects/<name> to the build tree, builds it with its Makefile, runs `livegraft build`
// against the built `prog`; returns the build's exit status and output.
int build_patch(const std::string& name, std::string* out) {
  const fs::path livegraft = fs::path(LG_BINARY_DIR) / "livegraft";
  const fs::path work = fs::path(LG_BINARY_DIR) / "builder-record" / name;
  fs::remove_all(work);
  fs::create_directories(work.parent_path());
  fs::copy(fs::path(LG_BUILDER_CASES) / "projects" / name, work, fs::copy_options::recursive);
  if (int rc = run("make -C " + work.string(), out); rc != 0) return 100 + rc;
  return run(livegraft.string() + " build --source " + work.string() + " --diff " + (work / "fix.diff").string() +
                 " --target " + (work / "prog").string() + " -o " + (work / "fix.o").string(),
             out);
}

}  // namespace

TEST(BuilderRecord, MakefileOwnCompilerFlagsAreKept) {
  if (!fs::exists(fs::path(LG_BINARY_DIR) / "livegraft")) GTEST_SKIP() << "livegraft is not built";
  std::string out;
  // Without -DSCALE=3 from the Makefile's CC the original would not even compile.
  ASSERT_EQ(build_patch("own-cc", &out), 0) << out;
  EXPECT_NE(out.find("recording the commands"), std::string::npos) << out;
  EXPECT_EQ(out.find("running the real build"), std::string::npos) << out;
  EXPECT_NE(out.find("CHANGED scaled"), std::string::npos) << out;
}

TEST(BuilderRecord, BuildThatRunsAGeneratedProgramFallsBackToTheRealBuild) {
  if (!fs::exists(fs::path(LG_BINARY_DIR) / "livegraft")) GTEST_SKIP() << "livegraft is not built";
  std::string out;
  ASSERT_EQ(build_patch("generated", &out), 0) << out;
  EXPECT_NE(out.find("running the real build"), std::string::npos) << out;
  EXPECT_NE(out.find("CHANGED square"), std::string::npos) << out;
}

TEST(BuilderRecord, GeneratedHeaderLeftEmptyIsCaughtByVerificationAndRebuiltForReal) {
  if (!fs::exists(fs::path(LG_BINARY_DIR) / "livegraft")) GTEST_SKIP() << "livegraft is not built";
  std::string out;
  ASSERT_EQ(build_patch("generated-config", &out), 0) << out;
  EXPECT_NE(out.find("the rebuilt original differs from the target after the record-only pass"), std::string::npos) << out;
  EXPECT_NE(out.find("CHANGED scaled"), std::string::npos) << out;
}
