#include "router/policy.h"

#include <gtest/gtest.h>

#include <map>

namespace kvc::router {
namespace {

TEST(PolicyTest, KvPrefersTheWorkerHoldingThePrefix) {
  Policy policy({.kind = PolicyKind::kKv});
  const std::vector<Candidate> candidates = {{.worker = 0, .matched_blocks = 0},
                                             {.worker = 1, .matched_blocks = 90},
                                             {.worker = 2, .matched_blocks = 10}};
  const Decision d = policy.Choose(candidates, 100, 16, 0.5);
  ASSERT_EQ(d.ranked.size(), 3u);
  EXPECT_EQ(d.ranked[0].worker, 1u);
  EXPECT_EQ(d.ranked[0].prefill_blocks, 10u);
  EXPECT_EQ(d.ranked[1].worker, 2u);  // next best, for failover
}

TEST(PolicyTest, KvBalancesHitsAgainstDecodeLoad) {
  Policy policy({.kind = PolicyKind::kKv, .overlap_weight = 1.0});
  // Worker 1 holds 20 more blocks but carries 640 tokens (40 blocks) more decode load.
  const std::vector<Candidate> candidates = {
      {.worker = 0, .matched_blocks = 0, .active_tokens = 0},
      {.worker = 1, .matched_blocks = 20, .active_requests = 5, .active_tokens = 640}};
  EXPECT_EQ(policy.Choose(candidates, 50, 16, 0).ranked[0].worker, 0u);
  Policy heavy({.kind = PolicyKind::kKv, .overlap_weight = 4.0});
  EXPECT_EQ(heavy.Choose(candidates, 50, 16, 0).ranked[0].worker, 1u);
  EXPECT_DOUBLE_EQ(heavy.Choose(candidates, 50, 16, 0).ranked[0].cost, 4.0 * 30 + 40);
}

TEST(PolicyTest, TiesRotateSoEqualWorkersShareTheLoad) {
  Policy policy({.kind = PolicyKind::kKv});
  const std::vector<Candidate> candidates = {{.worker = 0}, {.worker = 1}, {.worker = 2}};
  std::map<size_t, int> picks;
  for (int i = 0; i < 30; ++i) ++picks[policy.Choose(candidates, 8, 16, 0).ranked[0].worker];
  EXPECT_EQ(picks, (std::map<size_t, int>{{0, 10}, {1, 10}, {2, 10}}));
}

TEST(PolicyTest, NewPrefixesGoWhereTheCacheHasRoom) {
  Policy policy({.kind = PolicyKind::kKv});
  const std::vector<Candidate> candidates = {{.worker = 0, .cached_blocks = 500},
                                             {.worker = 1, .cached_blocks = 20},
                                             {.worker = 2, .cached_blocks = 300}};
  for (int i = 0; i < 5; ++i) EXPECT_EQ(policy.Choose(candidates, 8, 16, 0).ranked[0].worker, 1u);
}

TEST(PolicyTest, TemperatureSamplesButFavoursCheapWorkers) {
  Policy policy({.kind = PolicyKind::kKv, .temperature = 0.5});
  const std::vector<Candidate> candidates = {{.worker = 0, .matched_blocks = 0},
                                             {.worker = 1, .matched_blocks = 80}};
  std::map<size_t, int> picks;
  for (int i = 0; i < 1000; ++i) {
    ++picks[policy.Choose(candidates, 100, 16, (i + 0.5) / 1000).ranked[0].worker];
  }
  EXPECT_GT(picks[1], 700);
  EXPECT_GT(picks[0], 0);
}

TEST(PolicyTest, Baselines) {
  const std::vector<Candidate> candidates = {
      {.worker = 0, .matched_blocks = 99, .active_requests = 3},
      {.worker = 1, .active_requests = 1, .active_tokens = 500},
      {.worker = 2, .active_requests = 1, .active_tokens = 100}};
  Policy least({.kind = PolicyKind::kLeastLoaded});
  EXPECT_EQ(least.Choose(candidates, 100, 16, 0).ranked[0].worker, 2u);
  Policy rr({.kind = PolicyKind::kRoundRobin});
  std::vector<size_t> order;
  for (int i = 0; i < 4; ++i) order.push_back(rr.Choose(candidates, 100, 16, 0).ranked[0].worker);
  EXPECT_EQ(order, (std::vector<size_t>{0, 1, 2, 0}));
  Policy random({.kind = PolicyKind::kRandom});
  EXPECT_EQ(random.Choose(candidates, 100, 16, 0.1).ranked[0].worker, 0u);
  EXPECT_EQ(random.Choose(candidates, 100, 16, 0.9).ranked[0].worker, 2u);
}

TEST(PolicyTest, ParsesNames) {
  EXPECT_EQ(*ParsePolicy("kv"), PolicyKind::kKv);
  EXPECT_EQ(*ParsePolicy("least-loaded"), PolicyKind::kLeastLoaded);
  EXPECT_FALSE(ParsePolicy("fastest").ok());
}

}  // namespace
}  // namespace kvc::router
