// Golden tests of the object diff. Each case directory holds:
//   orig.c | orig.cpp        the original translation unit
//   patched.c | patched.cpp  the same file with the fix
//   other*.c | other*.cpp    optional: more translation units of the target binary
//   other*/                  optional: a directory of more units (a file named like the
//                            patched one, unit.c: two files of one name in the target)
//   *.h                      headers the units include (the case directory is on the path)
//   flags.txt                optional: extra compiler flags (one line)
//   target-flags.txt         optional: the target's copy of the original is compiled with these
//                            flags instead (a target that does not match the rebuild)
//   expected.txt             the expected changes, one per line, exactly as `livegraft diff`
//                            prints them ("CHANGED f", "CHANGED f (sympos 2)", "NEW g",
//                            "NEW DATA x", "LINE-ONLY h", "BOUND counter (sympos 2)": a
//                            reference bound to one of several definitions in the target,
//                            which the emitted patch must carry as a livegraft_sym entry
//                            "counter,2"; "ORIGINAL f": the patch keeps f's address, bound to
//                            the original f, "f,0" or "f,N"; "KEPT g": the patch keeps the
//                            address of its NEW function g, flagged LIVEGRAFT_PATCH_KEEP_CODE);
//                            lines "EXTERNAL name" must be among
//                            the names left to the loader; "REASON f text": one of the reasons
//                            given for CHANGED f (the indented "  because it ..." lines) starts
//                            with text; "WARNING text": some warning contains text;
//                            "NO-WARNING text": no warning does; an empty file = nothing to patch
//   expected-error.txt       instead: a substring of the refusal (which never says one thing twice:
//                            no line of it may repeat)
// The case is compiled with `-O2 -fPIC -ffunction-sections -fdata-sections -c`; the original
// objects are linked into a shared library that serves as the target binary (so old_sympos,
// the name checks and the code verification run too). A non-empty result is emitted, read back
// with the controller's patch reader, and relinked with `ld -r` to check the ELF is sound.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "builder/diff.h"
#include "builder/emit.h"
#include <livegraft/patch.h>
#include "builder/report.h"
#include "builder/target.h"
#ifdef LG_HAVE_PATCH_READER
#include "elf/patch_object.h"
#endif

namespace fs = std::filesystem;
using namespace lg::builder;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  while (!s.empty() && (s.front() == ' ')) s.erase(s.begin());
  return s;
}

int run(const std::string& cmd, std::string* output = nullptr) {
  std::string full = cmd + " 2>&1";
  FILE* p = popen(full.c_str(), "r");
  if (!p) return -1;
  char buf[4096];
  std::string out;
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  int status = pclose(p);
  if (output) *output = out;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

fs::path find_source(const fs::path& dir, const std::string& stem) {
  for (const char* ext : {".c", ".cpp"})
    if (fs::exists(dir / (stem + ext))) return dir / (stem + ext);
  return {};
}

std::string compiler_for(const fs::path& src) { return src.extension() == ".cpp" ? "g++" : "gcc"; }

std::vector<std::string> case_names() {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(LG_BUILDER_CASES))
    if (e.is_directory() && !find_source(e.path(), "orig").empty()) names.push_back(e.path().filename());
  std::sort(names.begin(), names.end());
  return names;
}

class Golden : public ::testing::TestWithParam<std::string> {};

TEST_P(Golden, DiffMatchesExpectation) {
  const fs::path dir = fs::path(LG_BUILDER_CASES) / GetParam();
  const fs::path work = fs::path(LG_BINARY_DIR) / "builder-golden" / GetParam();
  fs::remove_all(work);
  fs::create_directories(work);
  std::string flags = "-O2 -fPIC -ffunction-sections -fdata-sections";
  if (fs::exists(dir / "flags.txt")) flags += " " + trim(slurp(dir / "flags.txt"));
  flags += " -I" + dir.string();

  std::string out;
  auto compile = [&](const fs::path& src, const fs::path& obj) {
    std::string cmd = compiler_for(src) + " " + flags + " -c " + src.string() + " -o " + obj.string();
    ASSERT_EQ(run(cmd, &out), 0) << cmd << "\n" << out;
  };
  fs::path orig_src = find_source(dir, "orig"), patched_src = find_source(dir, "patched");
  ASSERT_FALSE(patched_src.empty()) << "case " << GetParam() << " has no patched.c/.cpp";
  // Both versions are compiled from one path, as in a real tree (__FILE__ must not differ).
  fs::create_directories(work / "src");
  fs::path unit = work / "src" / ("unit" + orig_src.extension().string());
  fs::copy_file(orig_src, unit);
  compile(unit, work / "orig.o");
  fs::path target_orig = work / "orig.o";
  if (fs::exists(dir / "target-flags.txt")) {
    // The running binary was built with other flags than the rebuild: must be detected.
    target_orig = work / "target-orig.o";
    std::string cmd = compiler_for(unit) + " -fPIC " + trim(slurp(dir / "target-flags.txt")) + " -c " + unit.string() +
                      " -o " + target_orig.string();
    ASSERT_EQ(run(cmd, &out), 0) << cmd << "\n" << out;
  }
  fs::copy_file(patched_src, unit, fs::copy_options::overwrite_existing);
  compile(unit, work / "patched.o");
  if (HasFatalFailure()) return;

  // Other translation units come first, so that a duplicate static name in the original gets
  // sympos 2.
  std::string link = "g++ -shared -o " + (work / "target.so").string();
  for (const auto& e : fs::directory_iterator(dir)) {
    std::string name = e.path().filename();
    if (!name.starts_with("other")) continue;
    if (e.is_directory()) {
      fs::create_directories(work / name);
      for (const auto& u : fs::directory_iterator(e.path())) {
        fs::path obj = work / name / (u.path().stem().string() + ".o");
        compile(u.path(), obj);
        link += " " + obj.string();
      }
      continue;
    }
    fs::path obj = work / (e.path().stem().string() + ".o");
    compile(e.path(), obj);
    link += " " + obj.string();
  }
  if (HasFatalFailure()) return;
  link += " " + target_orig.string();
  ASSERT_EQ(run(link, &out), 0) << link << "\n" << out;
  auto target = load_target((work / "target.so").string());
  ASSERT_TRUE(target.ok()) << target.error().describe();

  DiffOptions opts{(work / "orig.o").string(), (work / "patched.o").string(), &target.value()};
  auto result = diff_objects(opts);

  if (fs::exists(dir / "expected-error.txt")) {
    std::string want = trim(slurp(dir / "expected-error.txt"));
    ASSERT_FALSE(result.ok()) << "expected a refusal containing '" << want << "', got:\n" << format_text(*result);
    EXPECT_NE(result.error().message.find(want), std::string::npos)
        << "refusal does not contain '" << want << "':\n" << result.error().message;
    std::vector<std::string> lines;
    std::istringstream said(result.error().message);
    for (std::string line; std::getline(said, line);) lines.push_back(line);
    EXPECT_EQ(std::set<std::string>(lines.begin(), lines.end()).size(), lines.size())
        << "the refusal repeats a line:\n" << result.error().message;
    return;
  }
  ASSERT_TRUE(result.ok()) << result.error().describe();
  std::set<std::string> got, want, want_externals;
  std::vector<std::pair<std::string, std::string>> want_reasons;
  std::vector<std::string> warnings, want_warnings, unwanted_warnings;
  std::istringstream text(format_text(*result));
  for (std::string line; std::getline(text, line);) {
    if (line.starts_with("warning: ")) warnings.push_back(line);
    else if (!line.starts_with("  because it ")) got.insert(line);
  }
  std::istringstream expected(slurp(dir / "expected.txt"));
  for (std::string line; std::getline(expected, line);) {
    line = trim(line);
    if (line.empty() || line.starts_with("#")) continue;
    if (line.starts_with("EXTERNAL ")) {
      want_externals.insert(line.substr(9));
    } else if (line.starts_with("WARNING ")) {
      want_warnings.push_back(line.substr(8));
    } else if (line.starts_with("NO-WARNING ")) {
      unwanted_warnings.push_back(line.substr(11));
    } else if (line.starts_with("REASON ")) {
      size_t space = line.find(' ', 7);
      want_reasons.emplace_back(line.substr(7, space - 7), space == std::string::npos ? "" : line.substr(space + 1));
    } else {
      want.insert(line);
    }
  }
  EXPECT_EQ(got, want) << "full output:\n" << format_text(*result);
  for (const auto& [name, reason] : want_reasons) {
    auto f = std::find_if(result->functions.begin(), result->functions.end(),
                          [&](const FunctionChange& c) { return c.name == name && c.status == Status::changed; });
    ASSERT_NE(f, result->functions.end()) << name << " is not CHANGED:\n" << format_text(*result);
    EXPECT_TRUE(std::any_of(f->reasons.begin(), f->reasons.end(), [&](const std::string& r) { return r.starts_with(reason); }))
        << "no reason of " << name << " starts with '" << reason << "':\n" << format_text(*result);
  }
  auto warned = [&](const std::string& text) {
    return std::any_of(warnings.begin(), warnings.end(), [&](const std::string& w) { return w.find(text) != std::string::npos; });
  };
  for (const std::string& w : want_warnings) EXPECT_TRUE(warned(w)) << "no warning says '" << w << "':\n" << format_text(*result);
  for (const std::string& w : unwanted_warnings) EXPECT_FALSE(warned(w)) << "a warning says '" << w << "':\n" << format_text(*result);
  for (const std::string& e : want_externals)
    EXPECT_TRUE(std::count(result->externals.begin(), result->externals.end(), e))
        << e << " should be left to the loader (resolved in the target)";

  if (result->nothing_to_patch()) {
    PatchMetadata meta{"empty", std::nullopt, target->build_id};
    EXPECT_FALSE(emit_patch_object({&*result}, meta, (work / "out.o").string()).ok());
    return;
  }
  PatchMetadata meta{"golden-" + GetParam(), std::nullopt, target->build_id};
  std::replace(meta.name.begin(), meta.name.end(), '_', '-');
  auto emitted = emit_patch_object({&*result}, meta, (work / "out.o").string());
  ASSERT_TRUE(emitted.ok()) << emitted.error().describe();
  ASSERT_EQ(run("readelf -W -a " + (work / "out.o").string(), &out), 0) << out;
  EXPECT_EQ(out.find("Warning"), std::string::npos) << out;
  ASSERT_EQ(run("ld -r -o " + (work / "relinked.o").string() + " " + (work / "out.o").string(), &out), 0) << out;
#ifdef LG_HAVE_PATCH_READER
  auto patch = lg::read_patch_object((work / "out.o").string());
  ASSERT_TRUE(patch.ok()) << patch.error().describe();
  EXPECT_EQ(patch->name, meta.name);
  ASSERT_EQ(patch->objects.size(), 1u);
  EXPECT_EQ(patch->objects[0].build_id, target->build_id);
  std::set<std::string> replaced;
  for (const FunctionChange& f : result->functions)
    if (f.status == Status::changed) replaced.insert(f.name);
  std::set<std::string> in_patch;
  for (const auto& f : patch->objects[0].funcs) {
    in_patch.insert(f.old_name);
    EXPECT_EQ(f.new_symbol, f.old_name) << "new_func should be the replacement named like the original";
    EXPECT_GT(f.new_size, 0u);
  }
  EXPECT_EQ(in_patch, replaced);
  // Every bound reference is an undefined symbol "name,N" with its livegraft_sym entry.
  std::set<std::string> bound_want, bound_got;
  for (const auto& [name, sympos] : result->bound) bound_want.insert(name + "," + std::to_string(sympos));
  for (const auto& [name, sympos] : result->originals) bound_want.insert(name + "," + std::to_string(sympos));
  for (const auto& b : patch->objects[0].syms) {
    EXPECT_EQ(b.name, b.old_name + "," + std::to_string(b.old_sympos));
    bound_got.insert(b.name);
    EXPECT_TRUE(std::any_of(patch->undefined.begin(), patch->undefined.end(), [&](const auto& u) { return u.name == b.name; }))
        << b.name << " should be an undefined symbol of the patch";
  }
  EXPECT_EQ(bound_got, bound_want);
  EXPECT_EQ(patch->version, LIVEGRAFT_LAYOUT_VERSION);
  // `livegraft build --immediate-ok`: the root's flags carry LIVEGRAFT_PATCH_IMMEDIATE.
  // A kept address of a NEW function: LIVEGRAFT_PATCH_KEEP_CODE.
  const uint32_t keep = result->kept_new.empty() ? 0u : static_cast<uint32_t>(LIVEGRAFT_PATCH_KEEP_CODE);
  EXPECT_EQ(patch->flags, keep);
  PatchMetadata immediate = meta;
  immediate.immediate = true;
  ASSERT_TRUE(emit_patch_object({&*result}, immediate, (work / "immediate.o").string()).ok());
  auto imm = lg::read_patch_object((work / "immediate.o").string());
  ASSERT_TRUE(imm.ok()) << imm.error().describe();
  EXPECT_EQ(imm->flags, static_cast<uint32_t>(LIVEGRAFT_PATCH_IMMEDIATE) | keep);
#endif
}

INSTANTIATE_TEST_SUITE_P(Builder, Golden, ::testing::ValuesIn(case_names()),
                         [](const auto& info) {
                           std::string n = info.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

}  // namespace
