// JSON to text and back without exceptions (common/json_text.h), as the controller uses it.
#include "common/json_text.h"

#include <gtest/gtest.h>

namespace lg {
namespace {

TEST(JsonText, DumpReplacesInvalidUtf8AndSaysSo) {
  nlohmann::json j = {{"name", "fix\xff"}};
  bool replaced = false;
  std::string text;
  ASSERT_NO_THROW(text = dump_json(j, -1, &replaced));
  EXPECT_TRUE(replaced);
  EXPECT_EQ(text, "{\"name\":\"fix\xef\xbf\xbd\"}");
  EXPECT_EQ(dump_json({{"name", "fix"}}, -1, &replaced), "{\"name\":\"fix\"}");
  EXPECT_FALSE(replaced);
}

TEST(JsonText, FindInvalidUtf8LooksAtValuesAndKeysEverywhere) {
  EXPECT_FALSE(find_invalid_utf8({{"op", "load"}, {"funcs", {{{"old_name", "compute"}}}}}).has_value());
  EXPECT_EQ(find_invalid_utf8({{"op", "load"}, {"funcs", {{{"old_name", "comput\xff"}}}}}), "comput\\xff");
  nlohmann::json symbols = nlohmann::json::object();
  symbols["bump\xfe"] = 1;
  EXPECT_EQ(find_invalid_utf8({{"symbols", symbols}}), "bump\\xfe");
}

TEST(JsonText, ParseNeverThrows) {
  EXPECT_TRUE(parse_json("{\"ok\":tru").is_discarded());
  auto j = parse_json("{\"error\":\"bad \xff name\"}");
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j["error"], "bad \xef\xbf\xbd name");
}

}  // namespace
}  // namespace lg
