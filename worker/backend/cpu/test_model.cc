#include "worker/backend/cpu/test_model.h"

#include <cmath>
#include <memory>
#include <thread>
#include <vector>

#include "worker/backend/cpu/kernels.h"

namespace kvc::backend::cpu {
namespace {

using model::DType;
using model::TensorView;

uint64_t SplitMix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

struct Buffers {
  std::vector<std::unique_ptr<uint8_t[]>> owned;
};

// Thread-safety: one thread uses a Builder; Make() runs its own fill threads and joins them.
class Builder {
 public:
  Builder(DType dtype, uint64_t seed, Buffers* buffers)
      : dtype_(dtype), seed_(seed), buffers_(buffers) {}

  // Uniform in center +- half_width; element i depends only on (seed, tensor number, i), so
  // filling in parallel changes nothing.
  TensorView Make(std::vector<int64_t> shape, double center, double half_width) {
    TensorView t;
    t.dtype = dtype_;
    t.shape = std::move(shape);
    const int64_t n = t.numel();
    auto buffer = std::make_unique<uint8_t[]>(size_t(n) * ElementBytes(dtype_));
    uint8_t* data = buffer.get();
    const uint64_t stream = SplitMix(seed_ * 1000003 + tensor_count_++);
    const unsigned threads = std::max(1u, std::thread::hardware_concurrency());
    std::vector<std::thread> workers;
    for (unsigned w = 0; w < threads; ++w) {
      workers.emplace_back([&, w] {
        for (int64_t i = n * w / threads; i < n * (w + 1) / threads; ++i) {
          const double u = double(SplitMix(stream ^ uint64_t(i)) >> 11) * 0x1.0p-53;
          const float value = float(center + half_width * (2 * u - 1));
          switch (dtype_) {
            case DType::kF32:
              reinterpret_cast<float*>(data)[i] = value;
              break;
            case DType::kBF16:
              reinterpret_cast<uint16_t*>(data)[i] = FloatToBf16(value);
              break;
            case DType::kF16:
              reinterpret_cast<uint16_t*>(data)[i] = FloatToHalf(value);
              break;
          }
        }
      });
    }
    for (std::thread& t : workers) t.join();
    t.data = data;
    buffers_->owned.push_back(std::move(buffer));
    return t;
  }

  // A Linear weight [out, in] with the variance of U(+-1/sqrt(in)) scaled to unit output
  // variance: half width sqrt(3 / in).
  TensorView Linear(int64_t out, int64_t in) { return Make({out, in}, 0.0, std::sqrt(3.0 / in)); }
  TensorView Norm(int64_t n) { return Make({n}, 1.0, 0.2); }

 private:
  const DType dtype_;
  const uint64_t seed_;
  Buffers* const buffers_;
  uint64_t tensor_count_ = 0;
};

}  // namespace

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
  c.dtype = DType::kF32;
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
  c.dtype = DType::kBF16;
  c.bos_token_id = 128000;
  c.eos_token_ids = {128001, 128008, 128009};
  return c;
}

model::ModelWeights MakeRandomModel(const model::ModelConfig& config, uint64_t seed) {
  auto buffers = std::make_shared<Buffers>();
  Builder b(config.dtype, seed, buffers.get());
  const int64_t h = config.hidden_size, q = int64_t(config.num_heads) * config.head_dim,
                kv = int64_t(config.num_kv_heads) * config.head_dim,
                inter = config.intermediate_size;
  model::ModelWeights w;
  w.config = config;
  w.embed_tokens = b.Make({config.vocab_size, h}, 0.0, std::sqrt(3.0));
  for (int l = 0; l < config.num_layers; ++l) {
    model::LayerWeights L;
    L.input_layernorm = b.Norm(h);
    L.q_proj = b.Linear(q, h);
    L.k_proj = b.Linear(kv, h);
    L.v_proj = b.Linear(kv, h);
    if (config.attention_bias) {
      L.q_bias = b.Make({q}, 0.0, 0.3);
      L.k_bias = b.Make({kv}, 0.0, 0.3);
      L.v_bias = b.Make({kv}, 0.0, 0.3);
    }
    if (config.qk_norm) {
      L.q_norm = b.Norm(config.head_dim);
      L.k_norm = b.Norm(config.head_dim);
    }
    L.o_proj = b.Linear(h, q);
    if (config.o_proj_bias) L.o_bias = b.Make({h}, 0.0, 0.3);
    L.post_attention_layernorm = b.Norm(h);
    L.gate_proj = b.Linear(inter, h);
    L.up_proj = b.Linear(inter, h);
    L.down_proj = b.Linear(h, inter);
    w.layers.push_back(std::move(L));
  }
  w.norm = b.Norm(h);
  // Unit-variance lm_head, like the tied case: logits spread over several units.
  w.lm_head = config.tie_word_embeddings ? w.embed_tokens
                                         : b.Make({config.vocab_size, h}, 0.0, std::sqrt(3.0));
  w.storage = buffers;
  return w;
}

}  // namespace kvc::backend::cpu
