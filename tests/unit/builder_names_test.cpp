#include <gtest/gtest.h>

#include "builder/emit.h"
#include "builder/names.h"

using namespace lg::builder;

TEST(BuilderNames, CanonicalNameDropsCompilerNumbers) {
  EXPECT_EQ(canonical_name("foo.isra.0"), "foo.isra");
  EXPECT_EQ(canonical_name("foo.constprop.3.isra.1"), "foo.constprop.isra");
  EXPECT_EQ(canonical_name("foo.part.12"), "foo.part");
  EXPECT_EQ(canonical_name("foo.cold"), "foo.cold");
  EXPECT_EQ(canonical_name("foo.cold.7"), "foo.cold");
  EXPECT_EQ(canonical_name("bar.lto_priv.0"), "bar.lto_priv");
  EXPECT_EQ(canonical_name("counter.0"), "counter");
  EXPECT_EQ(canonical_name("plain"), "plain");
  EXPECT_EQ(canonical_name(".LC12"), ".LC12");
}

TEST(BuilderNames, ColdChildrenAndTheirParents) {
  EXPECT_TRUE(is_cold_child("parse.cold"));
  EXPECT_TRUE(is_cold_child("parse.cold.2"));
  EXPECT_TRUE(is_cold_child("parse.part.0.cold"));
  EXPECT_FALSE(is_cold_child("parse.part.0"));
  EXPECT_FALSE(is_cold_child("coldstart"));
  EXPECT_EQ(cold_parent_name("parse.cold"), "parse");
  EXPECT_EQ(cold_parent_name("parse.part.0.cold"), "parse.part.0");
  EXPECT_EQ(cold_parent_name("parse.coldness"), "");
}

TEST(BuilderNames, StaticLocalsAndAnonymousConstants) {
  EXPECT_TRUE(has_numeric_suffix("counter.0"));
  EXPECT_FALSE(has_numeric_suffix("counter"));
  EXPECT_FALSE(has_numeric_suffix("foo.isra"));
  EXPECT_TRUE(is_anonymous_constant_name("__func__.3"));
  EXPECT_TRUE(is_anonymous_constant_name("__PRETTY_FUNCTION__.0"));
  EXPECT_TRUE(is_anonymous_constant_name("CSWTCH.12"));
  EXPECT_FALSE(is_anonymous_constant_name("table"));
}

TEST(BuilderNames, PatchNamesAreSanitized) {
  EXPECT_EQ(sanitize_patch_name("fix-parse.v2"), "fix-parse.v2");
  EXPECT_EQ(sanitize_patch_name("fix parse/1"), "fix-parse-1");
  EXPECT_EQ(sanitize_patch_name(""), "patch");
  EXPECT_EQ(sanitize_patch_name(std::string(100, 'a')).size(), 64u);
}
