// The model as the backends see it: the architecture's hyper-parameters (ModelConfig, parsed
// from a Hugging Face config.json) and views of its weights (ModelWeights), which point into
// memory-mapped safetensors files and are never copied by the loader.
//
// This header is the contract between worker/model (which fills it) and the backends in
// worker/backend (which read it). Plain data, no behaviour; safe to share between threads
// once loaded.
#ifndef KVCLUSTER_WORKER_MODEL_MODEL_H_
#define KVCLUSTER_WORKER_MODEL_MODEL_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace kvc::model {

enum class Architecture {
  kLlama,    // LlamaForCausalLM (Llama 2/3/3.x, TinyLlama, SmolLM)
  kMistral,  // MistralForCausalLM (same math as Llama here)
  kQwen2,    // Qwen2ForCausalLM: bias on q/k/v projections
  kQwen3,    // Qwen3ForCausalLM: RMSNorm on q and k per head, no qkv bias
};

enum class DType { kF32, kBF16, kF16 };

size_t DTypeSize(DType dtype);
// "F32", "BF16", "F16": the names safetensors headers use.
const char* DTypeName(DType dtype);

// "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM".
const char* ArchitectureName(Architecture architecture);

// rope_scaling {"rope_type": "llama3", ...}; absent means plain RoPE.
struct Llama3RopeScaling {
  double factor = 8.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int original_max_position_embeddings = 8192;
};

struct ModelConfig {
  Architecture architecture = Architecture::kLlama;
  int hidden_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;  // == num_heads for MHA, 1 for MQA
  int head_dim = 0;      // config "head_dim", else hidden_size / num_heads
  int intermediate_size = 0;
  int vocab_size = 0;
  int max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  std::optional<Llama3RopeScaling> rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v projections carry a bias (Qwen2)
  // o_proj carries a bias too: Llama/Qwen3 with "attention_bias": true (Qwen2 never has one).
  // Backends that do not add LayerWeights::o_bias must refuse such a model.
  bool o_proj_bias = false;
  bool qk_norm = false;        // per-head RMSNorm on q and k (Qwen3)
  DType dtype = DType::kBF16;  // "torch_dtype" of the stored weights
  // Mistral/Qwen2 "sliding_window" when it is in force, else 0 (full attention). Attention
  // only matters past this many tokens; backends without it must cap sequences there.
  int sliding_window = 0;
  std::optional<int> bos_token_id;
  std::vector<int> eos_token_ids;  // config.json, overridden by generation_config.json

  // KV cache bytes per token at `kv_dtype`: 2 x layers x kv_heads x head_dim x bytes.
  size_t KvBytesPerToken(DType kv_dtype) const {
    return 2 * size_t(num_layers) * size_t(num_kv_heads) * size_t(head_dim) * DTypeSize(kv_dtype);
  }
};

// A read-only view of one stored tensor: row-major, `shape` in the file's order (for a Linear
// weight that is [out_features, in_features]). `data` stays valid while the ModelWeights that
// holds it is alive.
struct TensorView {
  const void* data = nullptr;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  size_t size_bytes() const { return size_t(numel()) * DTypeSize(dtype); }
  bool empty() const { return data == nullptr; }
};

struct LayerWeights {
  TensorView input_layernorm;           // [hidden]
  TensorView q_proj, k_proj, v_proj;    // [heads*head_dim, hidden], [kv_heads*head_dim, hidden]
  TensorView q_bias, k_bias, v_bias;    // empty unless attention_bias
  TensorView q_norm, k_norm;            // [head_dim], empty unless qk_norm
  TensorView o_proj;                    // [hidden, heads*head_dim]
  TensorView o_bias;                    // [hidden], empty unless o_proj_bias
  TensorView post_attention_layernorm;  // [hidden]
  TensorView gate_proj, up_proj;        // [intermediate, hidden]
  TensorView down_proj;                 // [hidden, intermediate]
};

struct ModelWeights {
  ModelConfig config;
  TensorView embed_tokens;  // [vocab, hidden]
  std::vector<LayerWeights> layers;
  TensorView norm;     // [hidden]
  TensorView lm_head;  // [vocab, hidden]; the embed_tokens view when tie_word_embeddings
  // Keeps the memory the views point into alive (file mappings, or buffers of a generated
  // model); opaque to the backends.
  std::shared_ptr<const void> storage;
};

}  // namespace kvc::model

#endif  // KVCLUSTER_WORKER_MODEL_MODEL_H_
