// Deterministic random weights, shared by kvc-make-model (which streams them into safetensors
// files) and MakeRandomWeights (which builds a ModelWeights in memory for tests and the sim
// backend). Element i of a tensor is a pure function of (seed, tensor name, i), so chunking,
// sharding and the order tensors are written in never change a value; only the dtype's
// rounding does. Same seed and config => the file model and the in-memory model are equal.
//
// Initialisation (chosen so random models decode stably, not flat):
//   linear weights  N(0, 1/in_features)    keeps every activation at unit scale
//   o_proj, down_proj  the same times a gain: 1, or max(1, 2 output_scale / sqrt(2 layers))
//                   when tied, so the layers outweigh the token's own embedding in the
//                   residual stream (otherwise a tied random model repeats its last token)
//   norm weights    1 + N(0, 0.1^2)        near identity, but a backend that skips them differs
//   biases          N(0, 0.1^2)
//   lm_head         N(0, (output_scale)^2 / hidden): logits after the final RMSNorm have a
//                   standard deviation of about output_scale (default 8), so the top-1/top-2
//                   gap is typically >1 and greedy choices do not flip under rounding.
//   embed_tokens    as lm_head when tied, else N(0, 1).
// "N" is an Irwin-Hall sum of four uniforms (bounded at +-3.46 sigma): fast, and any fixed
// distribution serves for a test model.
//
// Thread-safety: TensorInitializer is a value type for one thread; the functions are pure.
#ifndef KVCLUSTER_WORKER_MODEL_RANDOM_WEIGHTS_H_
#define KVCLUSTER_WORKER_MODEL_RANDOM_WEIGHTS_H_

#include <cstdint>

#include "worker/model/model.h"
#include "worker/model/tensor_specs.h"

namespace kvc::model {

struct InitOptions {
  uint64_t seed = 0;
  double output_scale = 8.0;  // standard deviation of the logits, see above
};

// Produces the values of one tensor in order.
class TensorInitializer {
 public:
  TensorInitializer(const TensorSpec& spec, const ModelConfig& config, const InitOptions& options);

  // Writes the next `count` values as `dtype` into `out`.
  void Fill(DType dtype, int64_t count, void* out);
  int64_t next_index() const { return next_; }

 private:
  uint64_t stream_;
  float mean_;
  float scale_;  // multiplies a unit-variance sample
  int64_t next_ = 0;
};

// All tensors of `config` in memory (one buffer, owned by ModelWeights::storage), dtype
// config.dtype. REQUIRES: ValidateModelConfig(config) is ok.
ModelWeights MakeRandomWeights(const ModelConfig& config, const InitOptions& options);

}  // namespace kvc::model

#endif  // KVCLUSTER_WORKER_MODEL_RANDOM_WEIGHTS_H_
