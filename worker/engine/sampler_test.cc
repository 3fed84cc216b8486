#include "worker/engine/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <vector>

namespace kvc::engine {
namespace {

std::vector<float> LogitsFromProbs(const std::vector<double>& probs) {
  std::vector<float> logits;
  for (double p : probs) logits.push_back(static_cast<float>(std::log(p)));
  return logits;
}

std::map<uint32_t, int> Histogram(const Sampler& sampler, const std::vector<float>& logits,
                                  int draws) {
  std::map<uint32_t, int> counts;
  std::vector<float> scratch;
  for (int i = 0; i < draws; ++i) ++counts[sampler.Sample(logits, i, &scratch).token];
  return counts;
}

TEST(SamplerTest, GreedyTakesArgmaxAndLowestIdOnTies) {
  Sampler sampler(SamplingOptions{}, 1);
  std::vector<float> scratch;
  EXPECT_EQ(sampler.Sample(std::vector<float>{0.1f, 3.0f, -1.0f, 3.0f}, 0, &scratch).token, 1u);
  const SampledToken t = sampler.Sample(std::vector<float>{0.0f, 0.0f}, 0, &scratch);
  EXPECT_EQ(t.token, 0u);
  EXPECT_NEAR(t.logprob, std::log(0.5), 1e-6);
}

TEST(SamplerTest, SameSeedSameTokensDifferentSeedDifferentTokens) {
  const std::vector<float> logits(1000, 0.0f);  // uniform
  const SamplingOptions options{.temperature = 1.0f};
  std::vector<float> scratch;
  std::vector<uint32_t> a, b, c;
  for (int pos = 0; pos < 64; ++pos) {
    a.push_back(Sampler(options, 42).Sample(logits, pos, &scratch).token);
    b.push_back(Sampler(options, 42).Sample(logits, pos, &scratch).token);
    c.push_back(Sampler(options, 43).Sample(logits, pos, &scratch).token);
  }
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
}

TEST(SamplerTest, TemperatureOneFollowsTheDistribution) {
  const std::vector<double> probs = {0.5, 0.25, 0.125, 0.125};
  const auto counts =
      Histogram(Sampler(SamplingOptions{.temperature = 1.0f}, 7), LogitsFromProbs(probs), 20000);
  for (size_t i = 0; i < probs.size(); ++i) {
    EXPECT_NEAR(counts.at(i) / 20000.0, probs[i], 0.015) << "token " << i;
  }
}

TEST(SamplerTest, LowTemperatureSharpens) {
  const auto counts = Histogram(Sampler(SamplingOptions{.temperature = 0.25f}, 7),
                                LogitsFromProbs({0.6, 0.4}), 5000);
  // p^4 normalised: 0.1296 / (0.1296 + 0.0256) = 0.835
  EXPECT_NEAR(counts.at(0) / 5000.0, 0.835, 0.02);
}

TEST(SamplerTest, TopKKeepsOnlyTheKMostLikely) {
  std::vector<float> logits(500, 0.0f);
  logits[17] = 2.0f;
  logits[300] = 1.9f;
  logits[2] = 1.8f;
  const auto counts =
      Histogram(Sampler(SamplingOptions{.temperature = 1.0f, .top_k = 2}, 3), logits, 2000);
  EXPECT_EQ(counts.size(), 2u);
  EXPECT_TRUE(counts.contains(17));
  EXPECT_TRUE(counts.contains(300));
}

TEST(SamplerTest, TopPKeepsTheSmallestNucleus) {
  std::vector<double> probs(200, 0.2 / 197);
  probs[5] = 0.5;
  probs[9] = 0.2;
  probs[100] = 0.1;
  const auto logits = LogitsFromProbs(probs);
  auto nucleus = [&](float top_p) {
    return Histogram(Sampler(SamplingOptions{.temperature = 1.0f, .top_p = top_p}, 11), logits,
                     3000);
  };
  EXPECT_EQ(nucleus(0.45f).size(), 1u);  // the top token alone holds 0.5
  const auto two = nucleus(0.6f);
  EXPECT_EQ(two.size(), 2u);
  EXPECT_NEAR(two.at(5) / 3000.0, 0.5 / 0.7, 0.03);
  EXPECT_EQ(nucleus(0.75f).size(), 3u);
  EXPECT_GT(nucleus(1.0f).size(), 50u);
}

TEST(SamplerTest, RejectsOutOfRangeOptions) {
  EXPECT_FALSE(ValidateSamplingOptions({.temperature = -1.0f}).ok());
  EXPECT_FALSE(ValidateSamplingOptions({.temperature = NAN}).ok());
  EXPECT_FALSE(ValidateSamplingOptions({.top_p = 0.0f}).ok());
  EXPECT_FALSE(ValidateSamplingOptions({.top_p = 1.5f}).ok());
  EXPECT_FALSE(ValidateSamplingOptions({.top_k = -3}).ok());
  EXPECT_TRUE(ValidateSamplingOptions({.temperature = 0.7f, .top_p = 0.9f, .top_k = 40}).ok());
}

}  // namespace
}  // namespace kvc::engine
