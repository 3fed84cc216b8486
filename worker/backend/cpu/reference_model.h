// A plain, obviously correct forward pass to test the CPU backend against: double precision,
// one sequence, no paging, no batching, no threads, no SIMD; the whole sequence is recomputed
// from its first token on every call. It follows Hugging Face's modeling_llama / qwen2 / qwen3
// step by step. Slow by design: for tiny test models only.
#ifndef KVCLUSTER_WORKER_BACKEND_CPU_REFERENCE_MODEL_H_
#define KVCLUSTER_WORKER_BACKEND_CPU_REFERENCE_MODEL_H_

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "worker/model/model.h"

namespace kvc::backend::cpu {

// Thread-safety: immutable after construction; Forward() may run on many threads at once.
class ReferenceModel {
 public:
  // `kv_rounding`: when set, K and V are rounded to that dtype after RoPE, as a cache stored in
  // it would hold them, so the comparison isolates the arithmetic from the storage format.
  explicit ReferenceModel(const model::ModelWeights& weights,
                          std::optional<model::DType> kv_rounding = std::nullopt);

  // Logits for every position of `tokens`: [tokens.size()][vocab_size].
  std::vector<std::vector<double>> Forward(std::span<const int32_t> tokens) const;

 private:
  const model::ModelWeights weights_;
  const std::optional<model::DType> kv_rounding_;
};

}  // namespace kvc::backend::cpu

#endif  // KVCLUSTER_WORKER_BACKEND_CPU_REFERENCE_MODEL_H_
