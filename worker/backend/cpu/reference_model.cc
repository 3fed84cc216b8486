#include "worker/backend/cpu/reference_model.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "worker/backend/cpu/kernels.h"

namespace kvc::backend::cpu {
namespace {

using model::DType;
using model::TensorView;
using Vec = std::vector<double>;

double At(const TensorView& t, int64_t i) {
  switch (t.dtype) {
    case DType::kF32:
      return static_cast<const float*>(t.data)[i];
    case DType::kBF16:
      return Bf16ToFloat(static_cast<const uint16_t*>(t.data)[i]);
    case DType::kF16:
      return HalfToFloat(static_cast<const uint16_t*>(t.data)[i]);
  }
  return 0;
}

double RoundTo(double x, DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return float(x);
    case DType::kBF16:
      return Bf16ToFloat(FloatToBf16(float(x)));
    case DType::kF16:
      return HalfToFloat(FloatToHalf(float(x)));
  }
  return x;
}

// y = W x (+ b) for a Linear weight W [out, in].
Vec Linear(const TensorView& w, const Vec& x, const TensorView* bias = nullptr) {
  const int64_t out = w.shape[0], in = w.shape[1];
  Vec y(out, 0.0);
  for (int64_t o = 0; o < out; ++o) {
    double s = 0;
    for (int64_t i = 0; i < in; ++i) s += At(w, o * in + i) * x[i];
    y[o] = s + (bias != nullptr && !bias->empty() ? At(*bias, o) : 0.0);
  }
  return y;
}

// RMSNorm of x[offset .. offset + n) in place.
void RmsNormInPlace(Vec& x, int64_t offset, int64_t n, const TensorView& weight, double eps) {
  double ms = 0;
  for (int64_t i = 0; i < n; ++i) ms += x[offset + i] * x[offset + i];
  const double scale = 1.0 / std::sqrt(ms / double(n) + eps);
  for (int64_t i = 0; i < n; ++i) x[offset + i] = x[offset + i] * scale * At(weight, i);
}

// HF _compute_default_rope_parameters / _compute_llama3_parameters.
Vec InverseFrequencies(const model::ModelConfig& c) {
  Vec inv(c.head_dim / 2);
  for (size_t i = 0; i < inv.size(); ++i) {
    inv[i] = 1.0 / std::pow(c.rope_theta, double(2 * i) / c.head_dim);
  }
  if (!c.rope_scaling) return inv;
  const auto& s = *c.rope_scaling;
  const double low_wavelen = s.original_max_position_embeddings / s.low_freq_factor;
  const double high_wavelen = s.original_max_position_embeddings / s.high_freq_factor;
  for (double& f : inv) {
    const double wavelen = 2 * std::numbers::pi / f;
    const double scaled = wavelen > low_wavelen ? f / s.factor : f;
    const double smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor) /
                          (s.high_freq_factor - s.low_freq_factor);
    const bool medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
    f = medium ? (1 - smooth) * scaled / s.factor + smooth * scaled : scaled;
  }
  return inv;
}

void Rope(Vec& x, int heads, int hd, int position, const Vec& inv) {
  for (int h = 0; h < heads; ++h) {
    for (int i = 0; i < hd / 2; ++i) {
      const double c = std::cos(position * inv[i]), s = std::sin(position * inv[i]);
      const double a = x[h * hd + i], b = x[h * hd + i + hd / 2];
      x[h * hd + i] = a * c - b * s;
      x[h * hd + i + hd / 2] = b * c + a * s;
    }
  }
}

}  // namespace

ReferenceModel::ReferenceModel(const model::ModelWeights& weights,
                               std::optional<model::DType> kv_rounding)
    : weights_(weights), kv_rounding_(kv_rounding) {}

std::vector<std::vector<double>> ReferenceModel::Forward(std::span<const int32_t> tokens) const {
  const model::ModelConfig& c = weights_.config;
  const int n = int(tokens.size()), hd = c.head_dim, hidden = c.hidden_size;
  const int group = c.num_heads / c.num_kv_heads;
  const Vec inv = InverseFrequencies(c);
  std::vector<Vec> x(n, Vec(hidden));
  for (int t = 0; t < n; ++t) {
    for (int i = 0; i < hidden; ++i)
      x[t][i] = At(weights_.embed_tokens, int64_t(tokens[t]) * hidden + i);
  }
  for (const model::LayerWeights& w : weights_.layers) {
    std::vector<Vec> q(n), k(n), v(n);
    for (int t = 0; t < n; ++t) {
      Vec xn = x[t];
      RmsNormInPlace(xn, 0, hidden, w.input_layernorm, c.rms_norm_eps);
      q[t] = Linear(w.q_proj, xn, &w.q_bias);
      k[t] = Linear(w.k_proj, xn, &w.k_bias);
      v[t] = Linear(w.v_proj, xn, &w.v_bias);
      if (c.qk_norm) {
        for (int h = 0; h < c.num_heads; ++h)
          RmsNormInPlace(q[t], h * hd, hd, w.q_norm, c.rms_norm_eps);
        for (int h = 0; h < c.num_kv_heads; ++h)
          RmsNormInPlace(k[t], h * hd, hd, w.k_norm, c.rms_norm_eps);
      }
      Rope(q[t], c.num_heads, hd, t, inv);
      Rope(k[t], c.num_kv_heads, hd, t, inv);
      if (kv_rounding_) {
        for (double& e : k[t]) e = RoundTo(e, *kv_rounding_);
        for (double& e : v[t]) e = RoundTo(e, *kv_rounding_);
      }
    }
    for (int t = 0; t < n; ++t) {
      Vec attn(size_t(c.num_heads) * hd, 0.0);
      for (int h = 0; h < c.num_heads; ++h) {
        const int kvh = h / group;  // HF repeat_kv: consecutive query heads share a KV head
        // Mistral's sliding window: positions (t - window, t].
        const int first = c.sliding_window > 0 ? std::max(0, t - c.sliding_window + 1) : 0;
        Vec scores(t + 1, -INFINITY);
        double max_score = -INFINITY;
        for (int p = first; p <= t; ++p) {
          double s = 0;
          for (int i = 0; i < hd; ++i) s += q[t][h * hd + i] * k[p][kvh * hd + i];
          scores[p] = s / std::sqrt(double(hd));
          max_score = std::max(max_score, scores[p]);
        }
        double sum = 0;
        for (double& s : scores) sum += (s = std::exp(s - max_score));  // exp(-inf) = 0
        for (int p = first; p <= t; ++p) {
          for (int i = 0; i < hd; ++i) attn[h * hd + i] += scores[p] / sum * v[p][kvh * hd + i];
        }
      }
      const Vec o = Linear(w.o_proj, attn, &w.o_bias);
      for (int i = 0; i < hidden; ++i) x[t][i] += o[i];
      Vec xn = x[t];
      RmsNormInPlace(xn, 0, hidden, w.post_attention_layernorm, c.rms_norm_eps);
      Vec gate = Linear(w.gate_proj, xn);
      const Vec up = Linear(w.up_proj, xn);
      for (size_t i = 0; i < gate.size(); ++i) gate[i] = gate[i] / (1 + std::exp(-gate[i])) * up[i];
      const Vec down = Linear(w.down_proj, gate);
      for (int i = 0; i < hidden; ++i) x[t][i] += down[i];
    }
  }
  std::vector<Vec> logits(n);
  for (int t = 0; t < n; ++t) {
    RmsNormInPlace(x[t], 0, hidden, weights_.norm, c.rms_norm_eps);
    logits[t] = Linear(weights_.lm_head, x[t]);
  }
  return logits;
}

}  // namespace kvc::backend::cpu
