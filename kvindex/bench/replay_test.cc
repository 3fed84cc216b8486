// Replays the start of the Mooncake trace through simulated workers whose caches emit events
// into the index, and checks that the index predicted every routed request's cache hit exactly
// and saw no anomaly. Skips when the trace is absent.
#include "kvindex/bench/replay.h"

#include <algorithm>

#include "gtest/gtest.h"
#include "kvindex/bench/trace.h"

namespace kvc::kvindex::bench {
namespace {

constexpr char kTracePath[] = "../shared/data/mooncake/conversation_trace.jsonl";

TEST(MooncakeReplayTest, IndexPredictsEveryCacheHit) {
  auto trace = LoadMooncakeTrace(kTracePath, 600);
  if (!trace.ok()) GTEST_SKIP() << "Mooncake trace not found: " << trace.status();
  ReplayConfig config;
  config.workers = 4;  // 4 x 8192 blocks against ~450k: evictions start early
  config.speedup = 1;
  const ReplayResult result = ReplayTrace(*trace, config);
  EXPECT_EQ(result.requests, 600u);
  EXPECT_EQ(result.mispredicted, 0u);
  EXPECT_EQ(result.anomalies, 0u);
  EXPECT_GT(result.removed_blocks, 0u);
  EXPECT_GT(result.hit_blocks, 0u);
  EXPECT_GT(result.stats.block_worker_pairs, 0u);
}

TEST(MooncakeReplayTest, ExpandsHashIdsIntoChainedBlocks) {
  TraceRequest a{0, 512 * 2 + 100, {0, 1, 2}};
  TraceRequest b{0, 512 + 48, {0, 7}};
  std::vector<uint64_t> seq_a, local_a, seq_b, local_b;
  ExpandRequest(a, 16, &seq_a, &local_a);
  ExpandRequest(b, 16, &seq_b, &local_b);
  ASSERT_EQ(seq_a.size(), 32u * 2 + 6);  // partial last block dropped
  ASSERT_EQ(seq_b.size(), 32u + 3);
  // Equal leading ids give equal leading blocks; the next id differs from there on.
  for (size_t i = 0; i < 32; ++i) EXPECT_EQ(seq_a[i], seq_b[i]);
  EXPECT_NE(seq_a[32], seq_b[32]);
  EXPECT_NE(local_a[0], local_a[1]);
}

TEST(MooncakeReplayTest, HashIdsBecomeFixedTokensCutToInputLength) {
  TraceRequest a{0, 512 + 100, {5, 9}};
  TraceRequest b{0, 512 * 2, {5, 11}};
  const std::vector<uint32_t> tokens_a = RequestTokens(a, 1000);
  const std::vector<uint32_t> tokens_b = RequestTokens(b, 1000);
  ASSERT_EQ(tokens_a.size(), 612u);
  ASSERT_EQ(tokens_b.size(), 1024u);
  // The first id's 512 tokens are shared, the second ids' differ, and every id is in range.
  EXPECT_TRUE(std::equal(tokens_a.begin(), tokens_a.begin() + 512, tokens_b.begin()));
  EXPECT_FALSE(std::equal(tokens_a.begin() + 512, tokens_a.end(), tokens_b.begin() + 512));
  for (uint32_t token : tokens_a) EXPECT_LT(token, 1000u);
  EXPECT_EQ(RequestTokens(a, 1000), tokens_a);
  // A record with fewer ids than its length needs gives only the tokens its ids stand for.
  EXPECT_EQ(RequestTokens(TraceRequest{0, 2000, {5}}, 1000).size(), 512u);
  std::vector<uint32_t> direct(kTraceTokensPerHashId);
  HashIdTokens(9, 1000, direct);
  EXPECT_TRUE(std::equal(direct.begin(), direct.begin() + 100, tokens_a.begin() + 512));
}

TEST(MooncakeReplayTest, ReadsOutputLength) {
  auto trace = LoadMooncakeTrace(kTracePath, 1);
  if (!trace.ok()) GTEST_SKIP() << "Mooncake trace not found: " << trace.status();
  EXPECT_EQ((*trace)[0].output_tokens, 500u);  // the first record's output_length
  EXPECT_EQ((*trace)[0].input_tokens, 6758u);
}

}  // namespace
}  // namespace kvc::kvindex::bench
