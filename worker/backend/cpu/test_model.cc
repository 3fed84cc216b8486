#include "worker/backend/cpu/test_model.h"

#include "worker/model/random_weights.h"

namespace kvc::backend::cpu {

model::ModelConfig TinyConfig(model::Architecture architecture) {
  model::ModelConfig c;
  c.architecture = architecture;
  c.hidden_size = 64;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 16;
  c.intermediate_size = 128;
  c.vocab_size = 256;
  c.max_position_embeddings = 4096;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 10000.0;
  c.dtype = model::DType::kF32;
  c.attention_bias = architecture == model::Architecture::kQwen2;
  c.qk_norm = architecture == model::Architecture::kQwen3;
  c.eos_token_ids = {1};
  return c;
}

model::ModelConfig Llama32_1BShapeConfig() {
  model::ModelConfig c;
  c.architecture = model::Architecture::kLlama;
  c.hidden_size = 2048;
  c.num_layers = 16;
  c.num_heads = 32;
  c.num_kv_heads = 8;
  c.head_dim = 64;
  c.intermediate_size = 8192;
  c.vocab_size = 128256;
  c.max_position_embeddings = 131072;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 500000.0;
  c.rope_scaling = model::Llama3RopeScaling{32.0, 1.0, 4.0, 8192};
  c.tie_word_embeddings = true;
  c.dtype = model::DType::kBF16;
  c.bos_token_id = 128000;
  c.eos_token_ids = {128001, 128008, 128009};
  return c;
}

model::ModelWeights MakeRandomModel(const model::ModelConfig& config, uint64_t seed) {
  // One generator for the whole project: the same one kvc-make-model writes to files.
  return model::MakeRandomWeights(config, model::InitOptions{.seed = seed});
}

}  // namespace kvc::backend::cpu
