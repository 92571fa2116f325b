// verify_function: the rebuilt original (compiled with -ffunction-sections) against the code in
// the target (the project's build: every function in one .text). GNU as may relax a branch
// differently in the two layouts (memcached's proxy_process_command: a backward `jmp` is short
// alone in its section and long in the project's .text, and the NOPs after it differ): the
// same code, accepted. Any other difference is still a refusal. The two layouts are written in
// assembly, the branch sizes forced with {disp8}/{disp32}.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "builder/load.h"
#include "builder/target.h"
#include "builder/verify.h"
#include "run_command.h"

namespace fs = std::filesystem;
using lg::builder_test::run;

namespace {

// The target: f and its static helper h in one .text, assembled and linked into a library.
// `body` is f's code after its label; h, a string and a call to h around it.
std::string target_asm(const std::string& body) {
  return "  .text\n  .p2align 4\n  .type h,@function\nh:\n  ret\n  .size h,.-h\n"
         "  .p2align 4\n  .globl f\n  .type f,@function\nf:\n  lea .LC0(%rip), %rax\n  call h\n" +
         body + "  .size f,.-f\n  .section .rodata\n.LC0:\n  .string \"x\"\n";
}
// The rebuilt original: f in a section of its own, h in another (the call is relocated).
std::string rebuilt_asm(const std::string& body) {
  return "  .section .text.h,\"ax\",@progbits\n  .type h,@function\nh:\n  ret\n  .size h,.-h\n"
         "  .section .text.f,\"ax\",@progbits\n  .p2align 4\n  .globl f\n  .type f,@function\nf:\n"
         "  lea .LC0(%rip), %rax\n  call h\n" +
         body + "  .size f,.-f\n  .section .rodata.str1.1,\"aMS\",@progbits,1\n.LC0:\n  .string \"x\"\n";
}

// A loop whose backward branch is `size` (disp8 or disp32), with `pad` NOPs before its head
// (the padding that differs with the branch's size); `step` is what it adds each time.
std::string loop(const std::string& size, int pad, int step = 1, const std::string& head = ".Lloop") {
  std::string s = "  xorl %eax, %eax\n";
  if (pad) s += "  .nops " + std::to_string(pad) + "\n";
  s += ".Lloop:\n  addl $" + std::to_string(step) + ", %eax\n.Lnext:\n  cmpl $10, %eax\n  {" + size + "} jne " + head +
       "\n  {" + size + "} jmp .Lout\n  nop\n.Lout:\n  ret\n";
  return s;
}

class BuilderVerify : public ::testing::Test {
 protected:
  fs::path dir;
  void SetUp() override {
    dir = fs::path(LG_BINARY_DIR) / "builder-verify" / ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  // verify_function of f, the target built from `target_body`, the original from `rebuilt_body`.
  lg::Result<void> check(const std::string& target_body, const std::string& rebuilt_body) {
    std::ofstream(dir / "target.s") << target_asm(target_body);
    std::ofstream(dir / "rebuilt.s") << rebuilt_asm(rebuilt_body);
    std::string out;
    EXPECT_EQ(run("cd " + dir.string() + " && gcc -c target.s -o target.o && gcc -shared -nostdlib target.o -o libt.so && "
                  "gcc -c rebuilt.s -o rebuilt.o", &out), 0) << out;
    auto orig = lg::builder::load_object((dir / "rebuilt.o").string());
    EXPECT_TRUE(orig.ok()) << orig.error().message;
    auto target = lg::builder::load_target((dir / "libt.so").string());
    EXPECT_TRUE(target.ok()) << target.error().message;
    const lg::builder::Symbol* f = nullptr;
    for (const auto& s : orig->symbols)
      if (s.name == "f") f = &s;
    const lg::builder::TargetSymbol* tf = nullptr;
    for (const auto& s : target->symbols)
      if (s.name == "f") tf = &s;
    EXPECT_TRUE(f && tf);
    return lg::builder::verify_function(*orig, *f, *target, *tf);
  }
};

}  // namespace

TEST_F(BuilderVerify, SameCodeIsAccepted) {
  auto r = check(loop("disp8", 0), loop("disp8", 0));
  EXPECT_TRUE(r.ok()) << r.error().message;
}

// The memcached pattern: the project's assembler kept the long forms, the builder's made them
// short; the NOPs differ too. Before the fix refused: "f is N bytes in libt.so but M bytes in the
// rebuilt original: the target was built from other sources, flags or compiler".
TEST_F(BuilderVerify, BranchRelaxedDifferentlyIsTheSameCode) {
  auto r = check(loop("disp32", 3), loop("disp8", 1));
  EXPECT_TRUE(r.ok()) << r.error().message;
}

TEST_F(BuilderVerify, AnotherInstructionIsRefusedWhateverTheBranches) {
  auto r = check(loop("disp32", 3, 2), loop("disp8", 1, 1));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find(lg::builder::kTargetBuiltDifferently), std::string::npos) << r.error().message;
}

TEST_F(BuilderVerify, BranchToAnotherInstructionIsRefused) {
  auto r = check(loop("disp32", 3, 1, ".Lloop"), loop("disp8", 1, 1, ".Lnext"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find(lg::builder::kTargetBuiltDifferently), std::string::npos) << r.error().message;
}

TEST_F(BuilderVerify, SameSizeDifferentByteIsRefused) {
  auto r = check(loop("disp8", 0, 2), loop("disp8", 0, 1));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("differs from the rebuilt original at offset"), std::string::npos) << r.error().message;
}
