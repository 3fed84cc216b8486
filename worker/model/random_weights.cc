#include "worker/model/random_weights.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "common/check.h"
#include "worker/model/dtype_convert.h"

namespace kvc::model {
namespace {

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// FNV-1a: a stable name hash (std::hash may differ between library versions).
uint64_t NameHash(const std::string& name) {
  uint64_t hash = 0xcbf29ce484222325ull;
  for (unsigned char c : name) hash = (hash ^ c) * 0x100000001b3ull;
  return hash;
}

// Unit-variance sample i of a stream: the sum of four 16-bit uniforms, centred and scaled.
inline float Sample(uint64_t stream, int64_t index) {
  const uint64_t bits = SplitMix64(stream ^ (uint64_t(index) * 0xd1342543de82ef95ull));
  const uint32_t sum = uint32_t(bits & 0xffff) + uint32_t((bits >> 16) & 0xffff) +
                       uint32_t((bits >> 32) & 0xffff) + uint32_t(bits >> 48);
  constexpr float kScale = 1.7320508f / 65536.0f;  // sqrt(12 / 4) per unit of 2^16
  return (float(sum) - 131070.0f) * kScale;
}

}  // namespace

TensorInitializer::TensorInitializer(const TensorSpec& spec, const ModelConfig& config,
                                     const InitOptions& options)
    : stream_(SplitMix64(options.seed ^ NameHash(spec.name))) {
  const float output_std = float(options.output_scale / std::sqrt(double(config.hidden_size)));
  mean_ = 0.0f;
  switch (spec.kind) {
    case TensorKind::kLinear:
      scale_ = float(1.0 / std::sqrt(double(spec.shape[1])));
      break;
    case TensorKind::kResidualOut: {
      // With tied embeddings the current token's embedding sits in the residual stream and
      // is also its own output row: unless the layers outweigh it, every model just repeats
      // its last token. Its logit advantage is about output_scale / (gain * sqrt(2 * layers))
      // standard deviations; the gain holds it near one half.
      const double gain =
          config.tie_word_embeddings
              ? std::max(1.0, 2.0 * options.output_scale / std::sqrt(2.0 * config.num_layers))
              : 1.0;
      scale_ = float(gain / std::sqrt(double(spec.shape[1])));
      break;
    }
    case TensorKind::kNorm:
      mean_ = 1.0f;
      scale_ = 0.1f;
      break;
    case TensorKind::kBias:
      scale_ = 0.1f;
      break;
    case TensorKind::kLmHead:
      scale_ = output_std;
      break;
    case TensorKind::kEmbedding:
      scale_ = config.tie_word_embeddings ? output_std : 1.0f;
      break;
  }
}

void TensorInitializer::Fill(DType dtype, int64_t count, void* out) {
  const int64_t first = next_;
  next_ += count;
  switch (dtype) {
    case DType::kF32: {
      float* values = static_cast<float*>(out);
      for (int64_t i = 0; i < count; ++i) values[i] = mean_ + scale_ * Sample(stream_, first + i);
      return;
    }
    case DType::kBF16: {
      uint16_t* values = static_cast<uint16_t*>(out);
      for (int64_t i = 0; i < count; ++i) {
        values[i] = FloatToBF16(mean_ + scale_ * Sample(stream_, first + i));
      }
      return;
    }
    case DType::kF16: {
      uint16_t* values = static_cast<uint16_t*>(out);
      for (int64_t i = 0; i < count; ++i) {
        values[i] = FloatToF16(mean_ + scale_ * Sample(stream_, first + i));
      }
      return;
    }
  }
}

ModelWeights MakeRandomWeights(const ModelConfig& config, const InitOptions& options) {
  ModelWeights weights;
  weights.config = config;
  weights.layers.resize(size_t(config.num_layers));
  const std::vector<TensorSpec> specs = ExpectedTensors(config);
  const size_t element = DTypeSize(config.dtype);
  // One buffer, each tensor starting on a 64-byte boundary for SIMD loads.
  size_t total = 0;
  for (const TensorSpec& spec : specs) total += (size_t(spec.numel()) * element + 63) / 64 * 64;
  auto buffer = std::make_shared<std::vector<uint8_t>>(total + 64);
  uint8_t* at = buffer->data() + (64 - reinterpret_cast<uintptr_t>(buffer->data()) % 64) % 64;
  for (const TensorSpec& spec : specs) {
    TensorInitializer(spec, config, options).Fill(config.dtype, spec.numel(), at);
    TensorView& slot = SlotOf(weights, spec);
    slot.data = at;
    slot.dtype = config.dtype;
    slot.shape = spec.shape;
    at += (size_t(spec.numel()) * element + 63) / 64 * 64;
  }
  if (config.tie_word_embeddings) weights.lm_head = weights.embed_tokens;
  weights.storage = std::move(buffer);
  return weights;
}

}  // namespace kvc::model
