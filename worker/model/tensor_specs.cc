#include "worker/model/tensor_specs.h"

#include "absl/strings/str_cat.h"
#include "common/check.h"

namespace kvc::model {

std::vector<TensorSpec> ExpectedTensors(const ModelConfig& config) {
  const int64_t hidden = config.hidden_size;
  const int64_t q_dim = int64_t(config.num_heads) * config.head_dim;
  const int64_t kv_dim = int64_t(config.num_kv_heads) * config.head_dim;
  const int64_t inter = config.intermediate_size;
  std::vector<TensorSpec> specs;
  auto add_model = [&](std::string name, std::vector<int64_t> shape, TensorKind kind,
                       TensorView ModelWeights::*slot) {
    specs.push_back({std::move(name), std::move(shape), kind, -1, nullptr, slot});
  };
  add_model("model.embed_tokens.weight", {config.vocab_size, hidden}, TensorKind::kEmbedding,
            &ModelWeights::embed_tokens);
  for (int layer = 0; layer < config.num_layers; ++layer) {
    const std::string prefix = absl::StrCat("model.layers.", layer, ".");
    auto add = [&](const char* suffix, std::vector<int64_t> shape, TensorKind kind,
                   TensorView LayerWeights::*slot) {
      specs.push_back({absl::StrCat(prefix, suffix), std::move(shape), kind, layer, slot, nullptr});
    };
    add("input_layernorm.weight", {hidden}, TensorKind::kNorm, &LayerWeights::input_layernorm);
    add("self_attn.q_proj.weight", {q_dim, hidden}, TensorKind::kLinear, &LayerWeights::q_proj);
    if (config.attention_bias) {
      add("self_attn.q_proj.bias", {q_dim}, TensorKind::kBias, &LayerWeights::q_bias);
    }
    add("self_attn.k_proj.weight", {kv_dim, hidden}, TensorKind::kLinear, &LayerWeights::k_proj);
    if (config.attention_bias) {
      add("self_attn.k_proj.bias", {kv_dim}, TensorKind::kBias, &LayerWeights::k_bias);
    }
    add("self_attn.v_proj.weight", {kv_dim, hidden}, TensorKind::kLinear, &LayerWeights::v_proj);
    if (config.attention_bias) {
      add("self_attn.v_proj.bias", {kv_dim}, TensorKind::kBias, &LayerWeights::v_bias);
    }
    add("self_attn.o_proj.weight", {hidden, q_dim}, TensorKind::kResidualOut,
        &LayerWeights::o_proj);
    if (config.o_proj_bias) {
      add("self_attn.o_proj.bias", {hidden}, TensorKind::kBias, &LayerWeights::o_bias);
    }
    if (config.qk_norm) {
      add("self_attn.q_norm.weight", {config.head_dim}, TensorKind::kNorm, &LayerWeights::q_norm);
      add("self_attn.k_norm.weight", {config.head_dim}, TensorKind::kNorm, &LayerWeights::k_norm);
    }
    add("post_attention_layernorm.weight", {hidden}, TensorKind::kNorm,
        &LayerWeights::post_attention_layernorm);
    add("mlp.gate_proj.weight", {inter, hidden}, TensorKind::kLinear, &LayerWeights::gate_proj);
    add("mlp.up_proj.weight", {inter, hidden}, TensorKind::kLinear, &LayerWeights::up_proj);
    add("mlp.down_proj.weight", {hidden, inter}, TensorKind::kResidualOut,
        &LayerWeights::down_proj);
  }
  add_model("model.norm.weight", {hidden}, TensorKind::kNorm, &ModelWeights::norm);
  if (!config.tie_word_embeddings) {
    add_model("lm_head.weight", {config.vocab_size, hidden}, TensorKind::kLmHead,
              &ModelWeights::lm_head);
  }
  return specs;
}

TensorView& SlotOf(ModelWeights& weights, const TensorSpec& spec) {
  if (spec.model_slot != nullptr) return weights.*spec.model_slot;
  KVC_CHECK(spec.layer >= 0 && size_t(spec.layer) < weights.layers.size(),
            "TensorSpec layer outside ModelWeights::layers");
  return weights.layers[size_t(spec.layer)].*spec.layer_slot;
}

}  // namespace kvc::model
