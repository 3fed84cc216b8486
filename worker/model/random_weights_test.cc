// Checks that the random initialisation gives logits that are far from flat, so that greedy
// decoding of a generated test model does not flip under rounding differences between
// backends. Uses a deliberately plain f32 forward pass (no cache: the whole sequence is
// recomputed each step) of the Llama/Qwen math.
#include "worker/model/random_weights.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <set>
#include <vector>

#include "gtest/gtest.h"
#include "worker/model/dtype_convert.h"

namespace kvc::model {
namespace {

using Matrix = std::vector<std::vector<float>>;  // [tokens][features]

float At(const TensorView& t, int64_t i) { return LoadAsFloat(t.data, t.dtype, i); }

// y = x W^T (+ b) for a [out, in] weight.
Matrix Linear(const Matrix& x, const TensorView& w, const TensorView& bias = {}) {
  const int64_t out = w.shape[0], in = w.shape[1];
  Matrix y(x.size(), std::vector<float>(size_t(out)));
  for (size_t t = 0; t < x.size(); ++t) {
    for (int64_t o = 0; o < out; ++o) {
      double sum = bias.empty() ? 0.0 : At(bias, o);
      for (int64_t i = 0; i < in; ++i) sum += double(x[t][size_t(i)]) * At(w, o * in + i);
      y[t][size_t(o)] = float(sum);
    }
  }
  return y;
}

// RMSNorm over consecutive groups of `width` features (width = hidden, or head_dim for q/k).
void RmsNorm(Matrix& x, const TensorView& weight, int width, double eps) {
  for (auto& row : x) {
    for (size_t start = 0; start < row.size(); start += size_t(width)) {
      double sum_sq = 0;
      for (int i = 0; i < width; ++i)
        sum_sq += double(row[start + size_t(i)]) * row[start + size_t(i)];
      const double scale = 1.0 / std::sqrt(sum_sq / width + eps);
      for (int i = 0; i < width; ++i) {
        row[start + size_t(i)] = float(row[start + size_t(i)] * scale * At(weight, i));
      }
    }
  }
}

void Rope(Matrix& x, int head_dim, double theta) {
  const int half = head_dim / 2;
  for (size_t pos = 0; pos < x.size(); ++pos) {
    for (size_t start = 0; start < x[pos].size(); start += size_t(head_dim)) {
      for (int i = 0; i < half; ++i) {
        const double angle = double(pos) * std::pow(theta, -2.0 * i / head_dim);
        const float a = x[pos][start + size_t(i)], b = x[pos][start + size_t(i + half)];
        x[pos][start + size_t(i)] = float(a * std::cos(angle) - b * std::sin(angle));
        x[pos][start + size_t(i + half)] = float(b * std::cos(angle) + a * std::sin(angle));
      }
    }
  }
}

std::vector<float> LastLogits(const ModelWeights& w, const std::vector<int>& tokens) {
  const ModelConfig& c = w.config;
  const int hidden = c.hidden_size, hd = c.head_dim;
  Matrix h(tokens.size(), std::vector<float>(size_t(hidden)));
  for (size_t t = 0; t < tokens.size(); ++t) {
    for (int i = 0; i < hidden; ++i) h[t][size_t(i)] = At(w.embed_tokens, tokens[t] * hidden + i);
  }
  for (const LayerWeights& layer : w.layers) {
    Matrix x = h;
    RmsNorm(x, layer.input_layernorm, hidden, c.rms_norm_eps);
    Matrix q = Linear(x, layer.q_proj, layer.q_bias), k = Linear(x, layer.k_proj, layer.k_bias);
    const Matrix v = Linear(x, layer.v_proj, layer.v_bias);
    if (c.qk_norm) {
      RmsNorm(q, layer.q_norm, hd, c.rms_norm_eps);
      RmsNorm(k, layer.k_norm, hd, c.rms_norm_eps);
    }
    Rope(q, hd, c.rope_theta);
    Rope(k, hd, c.rope_theta);
    Matrix attention(tokens.size(), std::vector<float>(size_t(c.num_heads * hd)));
    for (size_t t = 0; t < tokens.size(); ++t) {
      for (int head = 0; head < c.num_heads; ++head) {
        const int kv = head / (c.num_heads / c.num_kv_heads);
        std::vector<double> scores(t + 1);
        double max_score = -1e30, total = 0;
        for (size_t s = 0; s <= t; ++s) {
          double dot = 0;
          for (int i = 0; i < hd; ++i)
            dot += double(q[t][size_t(head * hd + i)]) * k[s][size_t(kv * hd + i)];
          scores[s] = dot / std::sqrt(double(hd));
          max_score = std::max(max_score, scores[s]);
        }
        for (double& score : scores) total += (score = std::exp(score - max_score));
        for (int i = 0; i < hd; ++i) {
          double sum = 0;
          for (size_t s = 0; s <= t; ++s) sum += scores[s] / total * v[s][size_t(kv * hd + i)];
          attention[t][size_t(head * hd + i)] = float(sum);
        }
      }
    }
    const Matrix o = Linear(attention, layer.o_proj, layer.o_bias);
    for (size_t t = 0; t < h.size(); ++t) {
      for (int i = 0; i < hidden; ++i) h[t][size_t(i)] += o[t][size_t(i)];
    }
    x = h;
    RmsNorm(x, layer.post_attention_layernorm, hidden, c.rms_norm_eps);
    Matrix gate = Linear(x, layer.gate_proj);
    const Matrix up = Linear(x, layer.up_proj);
    for (size_t t = 0; t < gate.size(); ++t) {
      for (size_t i = 0; i < gate[t].size(); ++i) {
        gate[t][i] = gate[t][i] / (1.0f + std::exp(-gate[t][i])) * up[t][i];
      }
    }
    const Matrix down = Linear(gate, layer.down_proj);
    for (size_t t = 0; t < h.size(); ++t) {
      for (int i = 0; i < hidden; ++i) h[t][size_t(i)] += down[t][size_t(i)];
    }
  }
  Matrix last = {h.back()};
  RmsNorm(last, w.norm, hidden, c.rms_norm_eps);
  return Linear(last, w.lm_head)[0];
}

ModelConfig TinyConfig(Architecture architecture, bool tied) {
  ModelConfig c;
  c.architecture = architecture;
  c.hidden_size = 64;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 16;
  c.intermediate_size = 128;
  c.vocab_size = 512;
  c.max_position_embeddings = 4096;
  c.dtype = DType::kF32;
  c.tie_word_embeddings = tied;
  c.attention_bias = architecture == Architecture::kQwen2;
  c.qk_norm = architecture == Architecture::kQwen3;
  return c;
}

TEST(RandomWeightsTest, GreedyDecodingHasClearMargins) {
  for (Architecture architecture :
       {Architecture::kLlama, Architecture::kQwen2, Architecture::kQwen3}) {
    for (bool tied : {false, true}) {
      const ModelWeights weights = MakeRandomWeights(TinyConfig(architecture, tied), {});
      std::vector<int> tokens = {1, 17, 300, 42, 7};
      std::vector<double> gaps;
      std::vector<int> generated;
      double logit_var = 0;
      for (int step = 0; step < 32; ++step) {
        std::vector<float> logits = LastLogits(weights, tokens);
        double mean = 0;
        for (float l : logits) mean += l / logits.size();
        for (float l : logits) logit_var += (l - mean) * (l - mean) / logits.size() / 32;
        const int best = int(std::max_element(logits.begin(), logits.end()) - logits.begin());
        std::vector<float> sorted = logits;
        std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<>());
        gaps.push_back(sorted[0] - sorted[1]);
        tokens.push_back(best);
        generated.push_back(best);
      }
      std::sort(gaps.begin(), gaps.end());
      const double logit_std = std::sqrt(logit_var);
      // Logits spread on the order of output_scale, and the typical top-1/top-2 gap dwarfs
      // float rounding (~1e-5 here): a backend that computes the same math decodes the same.
      EXPECT_GT(logit_std, 3.0) << ArchitectureName(architecture) << " tied=" << tied;
      EXPECT_LT(logit_std, 30.0);
      EXPECT_GT(gaps[gaps.size() / 2], 0.3) << ArchitectureName(architecture);
      EXPECT_GT(gaps[2], 1e-3) << ArchitectureName(architecture);
      // The sequence depends on the prompt: not one token forever from the first step.
      EXPECT_GT(std::set<int>(generated.begin(), generated.end()).size(), 1u)
          << ArchitectureName(architecture) << " tied=" << tied;
    }
  }
}

TEST(RandomWeightsTest, Fp16ConversionsRoundTrip) {
  for (float v : {0.0f, 1.0f, -2.5f, 65504.0f, 6.1035156e-05f, 5.9604645e-08f, 0.1f}) {
    EXPECT_NEAR(F16ToFloat(FloatToF16(v)), v, std::abs(v) / 1024 + 1e-12) << v;
  }
  EXPECT_EQ(FloatToF16(1e6f), 0x7c00);            // overflow -> inf
  EXPECT_EQ(FloatToF16(2.9802322e-08f), 0x0000);  // half the smallest subnormal: ties to even
  EXPECT_EQ(F16ToFloat(0x0001), 5.9604645e-08f);  // smallest subnormal
  EXPECT_EQ(FloatToBF16(1.0f), 0x3f80);
  EXPECT_EQ(FloatToBF16(1.00390625f), 0x3f80);  // exact tie rounds to even
  EXPECT_EQ(FloatToBF16(1.01171875f), 0x3f82);  // tie, odd below: rounds up
  EXPECT_EQ(BF16ToFloat(0x4049), 3.140625f);
  for (uint32_t h = 0; h < 0x7c00; ++h) {  // every finite positive half survives the round trip
    ASSERT_EQ(FloatToF16(F16ToFloat(uint16_t(h))), h);
  }
}

}  // namespace
}  // namespace kvc::model
