#include "common/flags.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace kvc {
namespace {

TEST(FlagsTest, NormalizesDashedFlagNamesOnly) {
  std::vector<std::string> args = {
      "prog", "--kv-cache-memory=1-2", "--max-num-seqs", "8", "-x-y", "value-with-dash",
      "--",   "--not-a-flag"};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  NormalizeFlagNames(static_cast<int>(argv.size()), argv.data());
  EXPECT_EQ(args[1], "--kv_cache_memory=1-2");
  EXPECT_EQ(args[2], "--max_num_seqs");
  EXPECT_EQ(args[4], "-x_y");
  EXPECT_EQ(args[5], "value-with-dash");
  EXPECT_EQ(args[7], "--not-a-flag");
}

TEST(FlagsTest, ParsesByteSizes) {
  EXPECT_EQ(*ParseByteSize("4096"), 4096u);
  EXPECT_EQ(*ParseByteSize("512MiB"), 512u << 20);
  EXPECT_EQ(*ParseByteSize("2 GiB"), 2ull << 30);
  EXPECT_EQ(*ParseByteSize("1.5GB"), 1500000000u);
  EXPECT_EQ(*ParseByteSize("10kb"), 10000u);
  EXPECT_FALSE(ParseByteSize("").ok());
  EXPECT_FALSE(ParseByteSize("-1MiB").ok());
  EXPECT_FALSE(ParseByteSize("lots").ok());
  EXPECT_FALSE(ParseByteSize("1e30TiB").ok());
}

TEST(FlagsTest, FormatsBytes) {
  EXPECT_EQ(FormatBytes(100), "100 B");
  EXPECT_EQ(FormatBytes(3u << 20), "3.00 MiB");
}

}  // namespace
}  // namespace kvc
