// The Hugging Face tensor names and shapes a ModelConfig implies, in file order, each tied to
// the ModelWeights slot it fills. The loader checks files against this list, the generator and
// MakeRandomWeights produce exactly this list, so all three agree by construction.
// Free functions over plain data: thread-safe.
#ifndef KVCLUSTER_WORKER_MODEL_TENSOR_SPECS_H_
#define KVCLUSTER_WORKER_MODEL_TENSOR_SPECS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "worker/model/model.h"

namespace kvc::model {

// What a tensor is, which decides how the generator initialises it.
// kResidualOut: o_proj and down_proj, whose outputs are added to the residual stream.
enum class TensorKind { kEmbedding, kLmHead, kLinear, kResidualOut, kBias, kNorm };

struct TensorSpec {
  std::string name;  // e.g. "model.layers.3.self_attn.q_proj.weight"
  std::vector<int64_t> shape;
  TensorKind kind = TensorKind::kLinear;
  int layer = -1;  // -1 for tensors outside the layers
  TensorView LayerWeights::*layer_slot = nullptr;
  TensorView ModelWeights::*model_slot = nullptr;

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

// REQUIRES: ValidateModelConfig(config) is ok. lm_head.weight is absent when tied.
std::vector<TensorSpec> ExpectedTensors(const ModelConfig& config);

// The slot `spec` fills. REQUIRES: weights.layers has config.num_layers entries.
TensorView& SlotOf(ModelWeights& weights, const TensorSpec& spec);

}  // namespace kvc::model

#endif  // KVCLUSTER_WORKER_MODEL_TENSOR_SPECS_H_
