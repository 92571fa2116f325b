// UTF-8 validation and the escaping/replacement used before text crosses into JSON.
#include "common/utf8.h"

#include <gtest/gtest.h>

namespace lg {
namespace {

TEST(Utf8, AcceptsWellFormedText) {
  EXPECT_TRUE(is_valid_utf8(""));
  EXPECT_TRUE(is_valid_utf8("calc-fix"));
  EXPECT_TRUE(is_valid_utf8("caf\xc3\xa9"));               // U+00E9
  EXPECT_TRUE(is_valid_utf8("\xe2\x82\xac"));              // U+20AC
  EXPECT_TRUE(is_valid_utf8("\xf0\x9f\x98\x80"));          // U+1F600
  EXPECT_TRUE(is_valid_utf8("\xf4\x8f\xbf\xbf"));          // U+10FFFF
}

TEST(Utf8, RejectsIllFormedText) {
  EXPECT_FALSE(is_valid_utf8("a\xff"));
  EXPECT_FALSE(is_valid_utf8("\xc3"));                     // truncated
  EXPECT_FALSE(is_valid_utf8("\xc0\xaf"));                 // overlong '/'
  EXPECT_FALSE(is_valid_utf8("\xe0\x80\xaf"));             // overlong
  EXPECT_FALSE(is_valid_utf8("\xed\xa0\x80"));             // surrogate U+D800
  EXPECT_FALSE(is_valid_utf8("\xf4\x90\x80\x80"));         // > U+10FFFF
  EXPECT_FALSE(is_valid_utf8("\x80"));                     // lone continuation
}

TEST(Utf8, PrintableEscapesBadBytesAndControlsOnly) {
  EXPECT_EQ(printable("fix\xff"), "fix\\xff");
  EXPECT_EQ(printable("a\nb\x1b[2J"), "a\\x0ab\\x1b[2J");
  EXPECT_EQ(printable("caf\xc3\xa9"), "caf\xc3\xa9");
  EXPECT_EQ(printable("\xc3"), "\\xc3");
}

TEST(Utf8, ReplaceGivesValidText) {
  EXPECT_EQ(replace_invalid_utf8("a\xff" "b"), "a\xef\xbf\xbd" "b");
  EXPECT_TRUE(is_valid_utf8(replace_invalid_utf8("\xed\xa0\x80\xc3")));
  EXPECT_EQ(replace_invalid_utf8("ok"), "ok");
}

TEST(Utf8, CheckNameSaysWhatIsWrong) {
  EXPECT_FALSE(check_name("calc-fix").has_value());
  EXPECT_EQ(check_name(""), "it is empty");
  EXPECT_EQ(check_name("a\xff"), "it is not valid UTF-8");
  EXPECT_EQ(check_name("a\tb"), "it contains a control character");
}

}  // namespace
}  // namespace lg
