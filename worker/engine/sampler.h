// Token sampling from logits: greedy, temperature, top-k, top-p, with a per-request seed.
//
// Randomness is counter-based: the draw for output position i depends only on (seed, i), so
// a request that is preempted and recomputed, or batched differently, samples exactly the
// same tokens, and the same seed always gives the same output.
#ifndef KVCLUSTER_WORKER_ENGINE_SAMPLER_H_
#define KVCLUSTER_WORKER_ENGINE_SAMPLER_H_

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "absl/status/status.h"

namespace kvc::engine {

struct SamplingOptions {
  // 0 is greedy (argmax, lowest id on ties).
  float temperature = 0.0f;
  // Nucleus mass in (0, 1]; 1 disables.
  float top_p = 1.0f;
  // Keep the k most likely tokens; 0 disables.
  int top_k = 0;
  // When absent the engine picks one per request.
  std::optional<uint64_t> seed;
};

// INVALID_ARGUMENT naming the field when a value is out of range.
absl::Status ValidateSamplingOptions(const SamplingOptions& options);

struct SampledToken {
  uint32_t token = 0;
  // log-softmax of the raw logits at the chosen token (the model's own distribution).
  float logprob = 0.0f;
};

// Stateless apart from its options and seed; safe to use from one thread at a time.
class Sampler {
 public:
  // REQUIRES: ValidateSamplingOptions(options).ok().
  Sampler(const SamplingOptions& options, uint64_t seed);

  // Samples the token at output position `position` (0 for the first generated token).
  // `scratch` is reused between calls to avoid allocations.
  SampledToken Sample(std::span<const float> logits, uint64_t position,
                      std::vector<float>* scratch) const;

  const SamplingOptions& options() const { return options_; }
  uint64_t seed() const { return seed_; }

 private:
  SamplingOptions options_;
  uint64_t seed_;
};

}  // namespace kvc::engine

#endif  // KVCLUSTER_WORKER_ENGINE_SAMPLER_H_
