// Greedy generation on any Backend, with the KV cache (prefill once, then one token per step)
// or without it (every step recomputes the whole sequence from position 0: the worker's
// --no-kv-cache mode, which exists to measure what the cache buys). Both modes must produce
// the same tokens. Without the cache the blocks still hold the K/V of the step being computed
// (attention reads them from there), but nothing computed in one step is used by the next.
#ifndef KVCLUSTER_WORKER_BACKEND_GENERATE_H_
#define KVCLUSTER_WORKER_BACKEND_GENERATE_H_

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/backend/backend.h"

namespace kvc::backend {

struct GenerateOptions {
  int max_new_tokens = 16;
  bool use_kv_cache = true;
  std::vector<int32_t> stop_token_ids;  // generation ends after emitting one of these
};

// Index of the largest value; the lowest index wins ties.
int32_t ArgMax(std::span<const float> values);

// Generates greedily after `prompt` using KV blocks 0 .. ceil(len / block_size) - 1 of the
// backend's pool (the caller owns the pool for the duration). Returns the new tokens.
// RESOURCE_EXHAUSTED when prompt + max_new_tokens does not fit the pool.
// REQUIRES: external synchronization, like every Backend call.
absl::StatusOr<std::vector<int32_t>> GenerateGreedy(Backend& backend,
                                                    std::span<const int32_t> prompt,
                                                    const GenerateOptions& options);

}  // namespace kvc::backend

#endif  // KVCLUSTER_WORKER_BACKEND_GENERATE_H_
