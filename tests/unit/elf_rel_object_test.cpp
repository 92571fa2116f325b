// The one patch-file reader (elf::RelObject), the loader's checks (elf::check_loadable) and the
// .eh_frame validator, on the patch objects of the build with one field corrupted at a time:
// everything the agent used to catch only after injection (or never) is refused by the
// controller's read_patch_object() before a process is touched.
#include "elf/rel_object.h"

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <iterator>

#include "elf/eh_frame_check.h"
#include "elf/patch_checks.h"
#include "elf/patch_object.h"

namespace lg {
namespace {

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

std::string patch(const std::string& name) { return std::string(LG_BINARY_DIR) + "/patches/" + name + ".o"; }

// A valid patch of the build and ways to corrupt one field of it.
class Corrupt : public ::testing::Test {
 protected:
  void load(const std::string& name) {
    bytes_ = read_file(patch(name));
    ASSERT_GT(bytes_.size(), 512u) << patch(name);
    auto ok = read_patch_object(bytes_, name);
    ASSERT_TRUE(ok) << ok.error().describe();
  }
  Elf64_Ehdr& ehdr() { return *reinterpret_cast<Elf64_Ehdr*>(bytes_.data()); }
  size_t section(const std::string& name) {
    auto o = elf::RelObject::parse(bytes_, "x");
    EXPECT_TRUE(o);
    int i = o ? o->find_section(name) : -1;
    EXPECT_GT(i, 0) << name;
    return static_cast<size_t>(i);
  }
  // Section headers may be unaligned in the buffer: edit a copy and write it back.
  template <class F>
  void edit_shdr(size_t index, F f) {
    size_t at = ehdr().e_shoff + index * sizeof(Elf64_Shdr);
    Elf64_Shdr h;
    std::memcpy(&h, bytes_.data() + at, sizeof h);
    f(h);
    std::memcpy(bytes_.data() + at, &h, sizeof h);
  }
  Elf64_Shdr shdr(size_t index) {
    Elf64_Shdr h;
    std::memcpy(&h, bytes_.data() + ehdr().e_shoff + index * sizeof(Elf64_Shdr), sizeof h);
    return h;
  }
  Error refusal() {
    auto r = read_patch_object(bytes_, "corrupt.o");
    EXPECT_FALSE(r.ok()) << "the corrupted patch was accepted";
    return r.ok() ? Error() : r.error();
  }
  std::vector<uint8_t> bytes_;
};

TEST_F(Corrupt, SectionHeaderEntrySizeIsChecked) {
  load("calc_fix");
  ehdr().e_shentsize = 60;
  Error e = refusal();
  EXPECT_EQ(e.kind, ErrorKind::bad_patch);
  EXPECT_NE(e.message.find("e_shentsize"), std::string::npos) << e.message;
}

TEST_F(Corrupt, SectionOutsideTheFileIsABadPatch) {
  load("calc_fix");
  size_t text = section(".text");
  uint64_t size = bytes_.size();
  edit_shdr(text, [&](Elf64_Shdr& h) { h.sh_offset = size + 0x1000; });
  Error e = refusal();
  EXPECT_EQ(e.kind, ErrorKind::bad_patch);  // exit code 6, not invalid_argument
  EXPECT_NE(e.message.find("lies outside the file"), std::string::npos) << e.message;
}

TEST_F(Corrupt, AlignmentAboveAPageIsRefusedBeforeInjection) {
  load("calc_fix");
  edit_shdr(section(".text"), [](Elf64_Shdr& h) { h.sh_addralign = 8192; });
  Error e = refusal();
  EXPECT_EQ(e.kind, ErrorKind::unsupported);
  EXPECT_NE(e.message.find("alignment 8192"), std::string::npos) << e.message;
  edit_shdr(section(".text"), [](Elf64_Shdr& h) { h.sh_addralign = 24; });
  EXPECT_NE(refusal().message.find("not a power of two"), std::string::npos);
}

TEST_F(Corrupt, CorruptedRelaTypeIsNotSilentlyIgnored) {
  load("calc_fix");
  size_t rela = section(".rela.text");
  edit_shdr(rela, [](Elf64_Shdr& h) { h.sh_type = SHT_PROGBITS; });
  Error e = refusal();
  EXPECT_EQ(e.kind, ErrorKind::bad_patch);
  EXPECT_NE(e.message.find(".rela.text"), std::string::npos) << e.message;
  EXPECT_NE(e.message.find("SHT_RELA"), std::string::npos) << e.message;
}

TEST_F(Corrupt, RelocationAgainstTheNullSymbolIsRefused) {
  load("calc_fix");
  Elf64_Shdr rela = shdr(section(".rela.text"));
  ASSERT_GE(rela.sh_size, sizeof(Elf64_Rela));
  Elf64_Rela r;
  std::memcpy(&r, bytes_.data() + rela.sh_offset, sizeof r);
  r.r_info = ELF64_R_INFO(0, ELF64_R_TYPE(r.r_info));
  std::memcpy(bytes_.data() + rela.sh_offset, &r, sizeof r);
  Error e = refusal();
  EXPECT_EQ(e.kind, ErrorKind::bad_patch);
  EXPECT_NE(e.message.find("null symbol"), std::string::npos) << e.message;
}

TEST_F(Corrupt, AllocatedSectionOfAnUnloadableTypeIsRefused) {
  load("calc_fix");
  edit_shdr(section(".text"), [](Elf64_Shdr& h) { h.sh_type = SHT_SYMTAB; });
  EXPECT_EQ(refusal().kind, ErrorKind::bad_patch);
}

// The .eh_frame damage of issue 6: each of these used to be registered with the host's
// unwinder, which then crashed in libgcc at the next throw.
TEST_F(Corrupt, EhFrameWithAHugeCieLengthIsRefused) {
  load("thrower_fix");
  Elf64_Shdr eh = shdr(section(".eh_frame"));
  uint32_t len = 0xfffffff0;
  std::memcpy(bytes_.data() + eh.sh_offset, &len, 4);
  Error e = refusal();
  EXPECT_EQ(e.kind, ErrorKind::bad_patch);
  EXPECT_NE(e.message.find(".eh_frame record at offset 0x0"), std::string::npos) << e.message;
  EXPECT_NE(e.message.find("runs past the end"), std::string::npos) << e.message;
}

TEST_F(Corrupt, EhFrameWith64BitLengthIsRefused) {
  load("thrower_fix");
  Elf64_Shdr eh = shdr(section(".eh_frame"));
  uint32_t len = 0xffffffff;
  std::memcpy(bytes_.data() + eh.sh_offset, &len, 4);
  Error e = refusal();
  EXPECT_EQ(e.kind, ErrorKind::unsupported);
  EXPECT_NE(e.message.find("64-bit"), std::string::npos) << e.message;
}

TEST_F(Corrupt, EhFrameGarbageIsRefused) {
  load("thrower_fix");
  Elf64_Shdr eh = shdr(section(".eh_frame"));
  // Keep the CIE's length and id (so the walk starts), scramble everything after them.
  for (uint64_t i = 8; i < eh.sh_size; ++i) bytes_[eh.sh_offset + i] ^= static_cast<uint8_t>(0xa5 + i * 29);
  Error e = refusal();
  EXPECT_NE(e.message.find(".eh_frame"), std::string::npos) << e.message;
}

TEST_F(Corrupt, EhFrameFdeOutsideThePatchCodeIsRefused) {
  load("thrower_fix");
  size_t eh = section(".eh_frame");
  Elf64_Shdr rela = shdr(section(".rela.eh_frame"));
  // The first FDE's pc_begin relocation: make its addend point far past .text.
  auto o = elf::RelObject::parse(bytes_, "x");
  ASSERT_TRUE(o);
  const auto& relocs = o->relocations_for(eh);
  ASSERT_FALSE(relocs.empty());
  size_t k = 0;
  while (k < relocs.size() && ELF64_ST_TYPE(o->symbols()[ELF64_R_SYM(relocs[k].r_info)].st_info) != STT_SECTION) ++k;
  ASSERT_LT(k, relocs.size());
  Elf64_Rela r = relocs[k];
  r.r_addend += 0x100000;
  std::memcpy(bytes_.data() + rela.sh_offset + k * sizeof(Elf64_Rela), &r, sizeof r);
  Error e = refusal();
  EXPECT_EQ(e.kind, ErrorKind::bad_patch);
  EXPECT_NE(e.message.find("FDE"), std::string::npos) << e.message;
}

TEST(PatchName, OneRuleWithoutLocale) {
  EXPECT_TRUE(elf::valid_patch_name("fix-compute_1.0"));
  EXPECT_TRUE(elf::valid_patch_name(std::string(64, 'a')));
  EXPECT_FALSE(elf::valid_patch_name(std::string(65, 'a')));
  EXPECT_FALSE(elf::valid_patch_name(""));
  EXPECT_FALSE(elf::valid_patch_name("."));
  EXPECT_FALSE(elf::valid_patch_name(".."));
  EXPECT_TRUE(elf::valid_patch_name("..."));
  EXPECT_FALSE(elf::valid_patch_name("a/b"));
  EXPECT_FALSE(elf::valid_patch_name("caf\xe9"));  // isalnum() says yes in a Latin-1 locale
  EXPECT_FALSE(elf::valid_patch_name("a b"));
}

// Hand-made .eh_frame tables for the validator itself.
class EhFrame : public ::testing::Test {
 protected:
  static void put32(std::vector<uint8_t>& v, uint32_t x) {
    for (int i = 0; i < 4; ++i) v.push_back(static_cast<uint8_t>(x >> (8 * i)));
  }
  // Appends a record (length, then [body]) and returns its offset.
  size_t record(const std::vector<uint8_t>& body) {
    size_t at = t_.size();
    put32(t_, static_cast<uint32_t>(body.size()));
    t_.insert(t_.end(), body.begin(), body.end());
    return at;
  }
  size_t cie(std::vector<uint8_t> instructions = {0x0c, 0x07, 0x08, 0x90, 0x01}, std::string aug = "zR", uint8_t enc = 0x1b,
             uint8_t ra = 16) {
    std::vector<uint8_t> b = {0, 0, 0, 0, 1};
    b.insert(b.end(), aug.begin(), aug.end());
    b.push_back(0);
    b.insert(b.end(), {0x01, 0x78, ra});
    if (!aug.empty()) b.insert(b.end(), {0x01, enc});
    b.insert(b.end(), instructions.begin(), instructions.end());
    return record(b);
  }
  size_t fde(size_t cie_at, uint32_t pc_range = 0x20, std::vector<uint8_t> instructions = {0x41, 0x0e, 0x10}) {
    std::vector<uint8_t> b;
    uint32_t ptr = static_cast<uint32_t>(t_.size() + 4 - cie_at);
    put32(b, ptr);
    put32(b, 0);  // pc_begin (pcrel sdata4)
    put32(b, pc_range);
    b.push_back(0);  // augmentation length
    b.insert(b.end(), instructions.begin(), instructions.end());
    return record(b);
  }
  Result<elf::EhFrameSummary> check() {
    ranges_.clear();
    return elf::check_eh_frame(t_, [&](const elf::EhFrameFde& f) -> Result<void> {
      ranges_.push_back(f.pc_range);
      return ok_result();
    }, "test");
  }
  std::string refusal() {
    auto r = check();
    EXPECT_FALSE(r.ok()) << "accepted";
    return r.ok() ? std::string() : r.error().message;
  }
  std::vector<uint8_t> t_;
  std::vector<uint64_t> ranges_;
};

TEST_F(EhFrame, WellFormedTableIsAccepted) {
  size_t c = cie();
  fde(c, 0x20);
  fde(c, 0x44, {0x0a, 0x41, 0x0e, 0x10, 0x0b});  // remember/restore in the FDE
  put32(t_, 0);                                 // terminator
  auto r = check();
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->cies, 1u);
  EXPECT_EQ(r->fdes, 2u);
  EXPECT_EQ(r->end, t_.size() - 4);
  EXPECT_EQ(ranges_, (std::vector<uint64_t>{0x20, 0x44}));
}

TEST_F(EhFrame, RestoreStateWithoutRememberIsRefused) {
  fde(cie(), 0x20, {0x0b});
  EXPECT_NE(refusal().find("DW_CFA_restore_state"), std::string::npos);
}

TEST_F(EhFrame, UnknownCallFrameInstructionIsRefused) {
  fde(cie(), 0x20, {0x3f});
  EXPECT_NE(refusal().find("unknown call frame instruction 0x3f"), std::string::npos);
}

TEST_F(EhFrame, RegisterThatX86DoesNotHaveIsRefused) {
  fde(cie(), 0x20, {0x0d, 0x40});  // def_cfa_register 64
  EXPECT_NE(refusal().find("register 64"), std::string::npos);
  t_.clear();
  cie({}, "zR", 0x1b, 99);
  EXPECT_NE(refusal().find("return address column 99"), std::string::npos);
}

TEST_F(EhFrame, PointerEncodingsTheUnwinderCannotUseAreRefused) {
  cie({}, "zR", 0x01);  // uleb128: libgcc's size_of_encoded_value aborts
  EXPECT_NE(refusal().find("FDE pointer encoding 0x01"), std::string::npos);
  t_.clear();
  cie({}, "zR", 0x3b);  // datarel: no data base for registered frames
  EXPECT_NE(refusal().find("0x3b"), std::string::npos);
  t_.clear();
  cie({}, "zQ");
  EXPECT_NE(refusal().find("unknown character 'Q'"), std::string::npos);
  t_.clear();
  cie({}, "eh");
  EXPECT_NE(refusal().find("augmentation 'eh'"), std::string::npos);
}

TEST_F(EhFrame, CiePointerMustNameACie) {
  size_t c = cie();
  size_t f = fde(c);
  fde(f);  // points at an FDE
  EXPECT_NE(refusal().find("does not point to a CIE"), std::string::npos);
}

TEST_F(EhFrame, ExpressionsAreCheckedForStackAndOperations) {
  fde(cie(), 0x20, {0x0f, 0x01, 0x1c});  // def_cfa_expression { DW_OP_minus } on an empty stack
  EXPECT_NE(refusal().find("pops an empty stack"), std::string::npos);
  t_.clear();
  fde(cie(), 0x20, {0x0f, 0x03, 0x2f, 0x00, 0x00});  // DW_OP_skip
  EXPECT_NE(refusal().find("DWARF operation 0x2f"), std::string::npos);
  t_.clear();
  fde(cie(), 0x20, {0x0f, 0x03, 0x76, 0x78, 0x06});  // breg6 -8; deref: what GCC emits
  EXPECT_TRUE(check());
}

TEST_F(EhFrame, LengthsAreChecked) {
  cie();
  t_.insert(t_.end(), {1, 0});  // two stray bytes
  EXPECT_NE(refusal().find("too few"), std::string::npos);
  t_.clear();
  size_t c = cie();
  t_[c] = 0xf0, t_[c + 1] = 0xff, t_[c + 2] = 0xff, t_[c + 3] = 0xff;
  EXPECT_NE(refusal().find("runs past the end"), std::string::npos);
  t_.clear();
  put32(t_, 2);
  t_.insert(t_.end(), {0, 0});
  EXPECT_NE(refusal().find("too short"), std::string::npos);
}

TEST_F(EhFrame, FdeCheckFailureIsReported) {
  fde(cie());
  auto r = elf::check_eh_frame(t_, [](const elf::EhFrameFde&) -> Result<void> { return make_error(ErrorKind::bad_patch, "not code"); }, "t");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("FDE at offset 0x"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("not code"), std::string::npos) << r.error().message;
}

}  // namespace
}  // namespace lg
