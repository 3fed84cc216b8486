#include "worker/server/stop_strings.h"

#include <gtest/gtest.h>

namespace kvc::server {
namespace {

TEST(StopStringFilterTest, PassesTextThroughWithoutStops) {
  StopStringFilter filter({});
  std::optional<std::string> matched;
  EXPECT_EQ(filter.Feed("hello", &matched), "hello");
  EXPECT_FALSE(matched.has_value());
}

TEST(StopStringFilterTest, HoldsBackPossibleStartsAndCutsAtTheMatch) {
  StopStringFilter filter({"</end>"});
  std::optional<std::string> matched;
  EXPECT_EQ(filter.Feed("abc</", &matched), "abc");
  EXPECT_EQ(filter.Feed("e", &matched), "");
  EXPECT_FALSE(matched.has_value());
  EXPECT_EQ(filter.Feed("nd>tail", &matched), "");
  EXPECT_EQ(matched, "</end>");
}

TEST(StopStringFilterTest, ReleasesHeldTextWhenItDiverges) {
  StopStringFilter filter({"STOP"});
  std::optional<std::string> matched;
  EXPECT_EQ(filter.Feed("ST", &matched), "");
  EXPECT_EQ(filter.Feed("ARS", &matched), "STAR");  // the last S may start STOP
  EXPECT_EQ(filter.Feed("S", &matched), "S");
  EXPECT_EQ(filter.Flush(), "S");
  EXPECT_FALSE(matched.has_value());
}

TEST(StopStringFilterTest, EarliestOfSeveralWins) {
  StopStringFilter filter({"world", "lo"});
  std::optional<std::string> matched;
  EXPECT_EQ(filter.Feed("hello world", &matched), "hel");
  EXPECT_EQ(matched, "lo");
}

TEST(StopStringFilterTest, MatchInsideOneDelta) {
  StopStringFilter filter({"\n\n"});
  std::optional<std::string> matched;
  EXPECT_EQ(filter.Feed("line one\n", &matched), "line one");
  EXPECT_EQ(filter.Feed("\nline two", &matched), "");
  EXPECT_EQ(matched, "\n\n");
}

}  // namespace
}  // namespace kvc::server
