#include "worker/engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "common/check.h"

namespace kvc::engine {
namespace {

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// A uniform double in [0, 1) that depends only on (seed, position).
double UniformAt(uint64_t seed, uint64_t position) {
  const uint64_t bits = SplitMix64(SplitMix64(seed) ^ position);
  return static_cast<double>(bits >> 11) * 0x1.0p-53;
}

uint32_t ArgMax(std::span<const float> logits) {
  return static_cast<uint32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

float LogSoftmaxAt(std::span<const float> logits, uint32_t token) {
  const float max = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (float l : logits) sum += std::exp(double(l) - max);
  return static_cast<float>(double(logits[token]) - max - std::log(sum));
}

}  // namespace

absl::Status ValidateSamplingOptions(const SamplingOptions& options) {
  if (!(options.temperature >= 0.0f) || !std::isfinite(options.temperature)) {
    return absl::InvalidArgumentError(
        absl::StrCat("temperature must be a finite number >= 0, got ", options.temperature));
  }
  if (!(options.top_p > 0.0f && options.top_p <= 1.0f)) {
    return absl::InvalidArgumentError(absl::StrCat("top_p must be in (0, 1], got ", options.top_p));
  }
  if (options.top_k < 0) {
    return absl::InvalidArgumentError(absl::StrCat("top_k must be >= 0, got ", options.top_k));
  }
  return absl::OkStatus();
}

Sampler::Sampler(const SamplingOptions& options, uint64_t seed) : options_(options), seed_(seed) {
  KVC_CHECK(ValidateSamplingOptions(options).ok(), "sampler built with invalid options");
}

SampledToken Sampler::Sample(std::span<const float> logits, uint64_t position,
                             std::vector<float>* scratch) const {
  KVC_CHECK(!logits.empty(), "sampling from no logits");
  if (options_.temperature == 0.0f || options_.top_k == 1) {
    const uint32_t token = ArgMax(logits);
    return {token, LogSoftmaxAt(logits, token)};
  }
  const float max_logit = logits[ArgMax(logits)];
  const double inv_t = 1.0 / options_.temperature;
  std::vector<float>& weights = *scratch;
  if (options_.top_k == 0 && options_.top_p >= 1.0f) {
    // Plain temperature sampling needs no ordering.
    weights.resize(logits.size());
    double sum = 0;
    for (size_t i = 0; i < logits.size(); ++i) {
      weights[i] = static_cast<float>(std::exp((double(logits[i]) - max_logit) * inv_t));
      sum += weights[i];
    }
    const double target = UniformAt(seed_, position) * sum;
    double cumulative = 0;
    uint32_t token = ArgMax(logits);
    for (size_t i = 0; i < weights.size(); ++i) {
      cumulative += weights[i];
      if (target < cumulative) {
        token = static_cast<uint32_t>(i);
        break;
      }
    }
    return {token, LogSoftmaxAt(logits, token)};
  }
  // Candidates sorted by logit, most likely first, cut to top_k; ties keep the lower id.
  const size_t vocab = logits.size();
  std::vector<uint32_t> order(vocab);
  std::iota(order.begin(), order.end(), 0u);
  auto more_likely = [&](uint32_t a, uint32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  size_t keep = options_.top_k > 0 ? std::min<size_t>(options_.top_k, vocab) : vocab;
  // Sort a growing head of the order until it holds the nucleus: most requests' nucleus is
  // a few dozen tokens, and sorting a 150k vocabulary every step would dominate decode.
  double total = 0;
  for (float l : logits) total += std::exp((double(l) - max_logit) * inv_t);
  size_t sorted = 0;
  size_t nucleus = keep;
  for (size_t head = std::min<size_t>(64, keep);; head = std::min(keep, head * 8)) {
    std::partial_sort(order.begin() + sorted, order.begin() + head, order.end(), more_likely);
    sorted = head;
    if (options_.top_p >= 1.0f) {
      if (sorted == keep) break;
      continue;
    }
    double cumulative = 0;
    size_t i = 0;
    for (; i < sorted; ++i) {
      cumulative += std::exp((double(logits[order[i]]) - max_logit) * inv_t) / total;
      if (cumulative >= options_.top_p) break;
    }
    if (i < sorted) {
      nucleus = std::min(keep, i + 1);
      break;
    }
    if (sorted == keep) break;
  }
  keep = std::min(keep, nucleus);

  weights.resize(keep);
  double sum = 0;
  for (size_t i = 0; i < keep; ++i) {
    weights[i] = static_cast<float>(std::exp((double(logits[order[i]]) - max_logit) * inv_t));
    sum += weights[i];
  }
  const double target = UniformAt(seed_, position) * sum;
  double cumulative = 0;
  uint32_t token = order[keep - 1];
  for (size_t i = 0; i < keep; ++i) {
    cumulative += weights[i];
    if (target < cumulative) {
      token = order[i];
      break;
    }
  }
  return {token, LogSoftmaxAt(logits, token)};
}

}  // namespace kvc::engine
