#include "worker/model/presets.h"

namespace kvc::model {

ModelConfig TinyLlamaConfig() {
  ModelConfig c;
  c.architecture = Architecture::kLlama;
  c.hidden_size = 64;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 16;
  c.intermediate_size = 128;
  c.vocab_size = 512;
  c.max_position_embeddings = 4096;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 10000.0;
  c.dtype = DType::kF32;
  c.bos_token_id = c.vocab_size - 2;
  c.eos_token_ids = {c.vocab_size - 1};
  return c;
}

ModelConfig Llama32_1BShapeConfig() {
  ModelConfig c;
  c.architecture = Architecture::kLlama;
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
  c.dtype = DType::kBF16;
  c.bos_token_id = 128000;
  c.eos_token_ids = {128001};
  return c;
}

ModelConfig Llama31_8BShapeConfig() {
  ModelConfig c;
  c.architecture = Architecture::kLlama;
  c.hidden_size = 4096;
  c.num_layers = 32;
  c.num_heads = 32;
  c.num_kv_heads = 8;
  c.head_dim = 128;
  c.intermediate_size = 14336;
  c.vocab_size = 128256;
  c.max_position_embeddings = 131072;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 500000.0;
  c.rope_scaling = model::Llama3RopeScaling{8.0, 1.0, 4.0, 8192};
  c.tie_word_embeddings = false;
  c.dtype = DType::kBF16;
  c.bos_token_id = 128000;
  c.eos_token_ids = {128001};
  return c;
}

ModelConfig Qwen3_06BShapeConfig() {
  ModelConfig c;
  c.architecture = Architecture::kQwen3;
  c.hidden_size = 1024;
  c.num_layers = 28;
  c.num_heads = 16;
  c.num_kv_heads = 8;
  c.head_dim = 128;
  c.intermediate_size = 3072;
  c.vocab_size = 151936;
  c.max_position_embeddings = 40960;
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 1000000.0;
  c.tie_word_embeddings = true;
  c.qk_norm = true;
  c.dtype = DType::kBF16;
  c.bos_token_id = 151643;
  c.eos_token_ids = {151645, 151643};
  return c;
}

}  // namespace kvc::model
