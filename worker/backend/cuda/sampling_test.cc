// GPU sampling against the engine's CPU sampler (worker/engine/sampler.h) on the same logits:
// the same token for greedy (exactly) and for every random mode (temperature, top-k, top-p,
// both), since both walk the same order with the same counter-based uniform; the fixed-point
// sums can only move a draw that falls within ~1e-12 of a boundary between two tokens (odds
// of ~1e-6 for the whole test). Log-probabilities within 1e-5. Needs a GPU; skips otherwise.
#include "worker/backend/cuda/sampling.h"

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "worker/backend/cuda/cuda_test_util.h"
#include "worker/engine/sampler.h"

namespace kvc::backend::cuda {
namespace {

using testing::DeviceArray;

struct Mode {
  float temperature;
  float top_p;
  int top_k;
};

std::string Describe(const Mode& m) {
  return absl::StrCat("T=", m.temperature, " top_p=", m.top_p, " top_k=", m.top_k);
}

// Rows of logits with the features that matter: ties at the maximum, a flat row, -inf
// entries, a peaked row, a large vocabulary.
std::vector<std::vector<float>> TestRows() {
  std::vector<std::vector<float>> rows;
  std::mt19937 rng(17);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  const auto random_row = [&](int vocab, float scale) {
    std::vector<float> row(vocab);
    for (float& l : row) l = normal(rng) * scale;
    return row;
  };
  rows.push_back(random_row(1000, 1.0f));
  std::vector<float> ties = random_row(777, 1.0f);
  ties[5] = ties[300] = ties[701] = 40.0f;  // three-way tie at the top: lowest id wins greedy
  rows.push_back(ties);
  rows.push_back(std::vector<float>(512, 0.25f));  // flat: every token equally likely
  std::vector<float> masked = random_row(640, 1.0f);
  for (int i = 0; i < 640; i += 3) masked[i] = -INFINITY;
  rows.push_back(masked);
  rows.push_back(random_row(4096, 4.0f));    // peaked
  rows.push_back(random_row(151936, 1.0f));  // Qwen3's vocabulary
  return rows;
}

TEST(CudaSamplingTest, MatchesTheEngineSampler) {
  KVC_REQUIRE_CUDA_DEVICE();
  const std::vector<Mode> modes = {{0.0f, 1.0f, 0}, {0.7f, 1.0f, 0},  {1.3f, 1.0f, 0},
                                   {1.0f, 1.0f, 1}, {1.0f, 1.0f, 5},  {0.8f, 1.0f, 50},
                                   {1.0f, 0.5f, 0}, {0.9f, 0.95f, 0}, {1.0f, 0.9f, 40},
                                   {2.0f, 0.3f, 3}, {1.0f, 1e-6f, 0}, {1.0f, 1.0f, 100000}};
  int compared = 0;
  for (const std::vector<float>& row : TestRows()) {
    const int vocab = int(row.size());
    // Every mode on the row, several draws each: one kernel launch, one block per row.
    std::vector<float> logits;
    std::vector<SampleParams> params;
    std::vector<std::pair<Mode, SampleParams>> expected_inputs;
    for (const Mode& mode : modes) {
      for (uint64_t draw = 0; draw < 6; ++draw) {
        const SampleParams p{.seed = 1000 + draw * 7919,
                             .position = draw * 3 + uint64_t(vocab % 5),
                             .temperature = mode.temperature,
                             .top_p = mode.top_p,
                             .top_k = mode.top_k,
                             .sample = 1};
        logits.insert(logits.end(), row.begin(), row.end());
        params.push_back(p);
        expected_inputs.emplace_back(mode, p);
      }
    }
    // One row that wants no token.
    logits.insert(logits.end(), row.begin(), row.end());
    params.push_back(SampleParams{.sample = 0});
    const int rows = int(params.size());

    DeviceArray<float> d_logits(logits);
    DeviceArray<SampleParams> d_params(params);
    DeviceArray<float> d_scratch(size_t(rows) * vocab);
    DeviceArray<int32_t> d_tokens(rows);
    DeviceArray<float> d_logprobs(rows);
    ASSERT_EQ(LaunchSampleTokens(d_logits.get(), rows, vocab, d_params.get(), d_scratch.get(),
                                 d_tokens.get(), d_logprobs.get(), nullptr),
              cudaSuccess);
    const std::vector<int32_t> tokens = d_tokens.ToHost();
    const std::vector<float> logprobs = d_logprobs.ToHost();
    std::vector<float> scratch;
    for (int r = 0; r + 1 < rows; ++r) {
      const auto& [mode, p] = expected_inputs[r];
      const engine::Sampler sampler(
          engine::SamplingOptions{
              .temperature = mode.temperature, .top_p = mode.top_p, .top_k = mode.top_k},
          p.seed);
      const engine::SampledToken want = sampler.Sample(row, p.position, &scratch);
      ASSERT_EQ(tokens[r], int32_t(want.token))
          << "vocab " << vocab << ", " << Describe(mode) << ", seed " << p.seed << ", position "
          << p.position;
      EXPECT_NEAR(logprobs[r], want.logprob, 1e-5) << "vocab " << vocab << ", " << Describe(mode);
      ++compared;
    }
    EXPECT_EQ(tokens[rows - 1], -1);

    // Same inputs, same tokens: the result does not depend on thread timing.
    ASSERT_EQ(LaunchSampleTokens(d_logits.get(), rows, vocab, d_params.get(), d_scratch.get(),
                                 d_tokens.get(), d_logprobs.get(), nullptr),
              cudaSuccess);
    EXPECT_EQ(d_tokens.ToHost(), tokens);
  }
  EXPECT_EQ(compared, 6 * 12 * 6);
}

// Over many positions, top-k draws stay among the k largest logits and top-p draws inside the
// nucleus, and every kept token comes up: the cut is neither too tight nor too loose.
TEST(CudaSamplingTest, DrawsCoverExactlyTheKeptTokens) {
  KVC_REQUIRE_CUDA_DEVICE();
  const int vocab = 64, draws = 2000;
  std::vector<float> row(vocab);
  for (int i = 0; i < vocab; ++i) row[i] = float((i * 37) % vocab) / 16.0f;  // distinct values
  for (const Mode mode : {Mode{1.0f, 1.0f, 6}, Mode{0.5f, 0.8f, 0}}) {
    std::vector<float> logits;
    std::vector<SampleParams> params;
    for (int d = 0; d < draws; ++d) {
      logits.insert(logits.end(), row.begin(), row.end());
      params.push_back(SampleParams{.seed = 99,
                                    .position = uint64_t(d),
                                    .temperature = mode.temperature,
                                    .top_p = mode.top_p,
                                    .top_k = mode.top_k,
                                    .sample = 1});
    }
    DeviceArray<float> d_logits(logits);
    DeviceArray<SampleParams> d_params(params);
    DeviceArray<float> d_scratch(size_t(draws) * vocab);
    DeviceArray<int32_t> d_tokens(draws);
    DeviceArray<float> d_logprobs(draws);
    ASSERT_EQ(LaunchSampleTokens(d_logits.get(), draws, vocab, d_params.get(), d_scratch.get(),
                                 d_tokens.get(), d_logprobs.get(), nullptr),
              cudaSuccess);
    // The kept set, computed here: sort by logit, cut by k, then by the nucleus mass.
    std::vector<int> order(vocab);
    for (int i = 0; i < vocab; ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](int a, int b) { return row[a] > row[b]; });
    const double max_logit = row[order[0]];
    double total = 0;
    for (float l : row) total += std::exp((l - max_logit) / mode.temperature);
    size_t keep = mode.top_k > 0 ? size_t(mode.top_k) : size_t(vocab);
    double cumulative = 0;
    for (size_t i = 0; i < keep; ++i) {
      cumulative += std::exp((row[order[i]] - max_logit) / mode.temperature) / total;
      if (cumulative >= mode.top_p) {
        keep = i + 1;
        break;
      }
    }
    std::vector<int> kept_count(vocab, 0);
    for (int32_t t : d_tokens.ToHost()) {
      ASSERT_GE(t, 0);
      ASSERT_LT(t, vocab);
      ++kept_count[t];
    }
    for (size_t i = 0; i < size_t(vocab); ++i) {
      if (i < keep) {
        EXPECT_GT(kept_count[order[i]], 0) << Describe(mode) << ": kept token never drawn";
      } else {
        EXPECT_EQ(kept_count[order[i]], 0) << Describe(mode) << ": token outside the cut drawn";
      }
    }
  }
}

}  // namespace
}  // namespace kvc::backend::cuda
