// The CUDA element-wise kernels (kernels.h) against plain host references on random inputs.
// Tolerances, relative to the reference value: one unit in the last place of the output dtype
// (bf16 2^-8, f16 2^-10: the kernel's f32 result may round the other way than the exact one),
// 1e-5 for f32 outputs (float vs double arithmetic). Exact where no arithmetic happens.
// Needs a GPU; skips otherwise.
#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "worker/backend/cpu/rope.h"
#include "worker/backend/cuda/cuda_test_util.h"
#include "worker/backend/cuda/kernels.h"
#include "worker/model/presets.h"

namespace kvc::backend::cuda {
namespace {

using model::DType;
using testing::Decode;
using testing::DeviceArray;
using testing::Encode;
using testing::RandomNormal;
using testing::RoundTo;
using testing::UlpTolerance;

const DType kDTypes[] = {DType::kF32, DType::kBF16, DType::kF16};

// |actual - expected| within the dtype's tolerance of |expected| (and a small absolute floor
// for values near zero, relative to the scale of the data).
void ExpectClose(const std::vector<float>& actual, const std::vector<double>& expected, DType dtype,
                 double scale, const std::string& what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  const double tol = UlpTolerance(dtype);
  int failures = 0;
  for (size_t i = 0; i < actual.size() && failures < 5; ++i) {
    const double bound = tol * std::fabs(expected[i]) + 1e-6 * scale;
    if (!(std::fabs(actual[i] - expected[i]) <= bound)) {
      ADD_FAILURE() << what << " [" << i << "]: " << actual[i] << " vs " << expected[i];
      ++failures;
    }
  }
}

TEST(CudaKernelsTest, EmbeddingGathersRowsExactly) {
  KVC_REQUIRE_CUDA_DEVICE();
  const int vocab = 300, hidden = 96;
  const std::vector<int32_t> tokens = {0, 299, 17, 17, 150};
  for (DType dtype : kDTypes) {
    const std::vector<float> table = RandomNormal(size_t(vocab) * hidden, 1);
    const std::vector<uint8_t> stored = Encode(table, dtype);
    DeviceArray<uint8_t> d_table(stored);
    DeviceArray<int32_t> d_tokens(tokens);
    DeviceArray<float> d_x(tokens.size() * hidden);
    ASSERT_EQ(LaunchEmbedding(d_tokens.get(), int(tokens.size()), d_table.get(), dtype, hidden,
                              d_x.get(), nullptr),
              cudaSuccess);
    const std::vector<float> x = d_x.ToHost();
    const std::vector<float> decoded = Decode(stored, dtype);
    for (size_t t = 0; t < tokens.size(); ++t) {
      for (int i = 0; i < hidden; ++i) {
        ASSERT_EQ(x[t * hidden + i], decoded[size_t(tokens[t]) * hidden + i])
            << model::DTypeName(dtype) << " token " << t;
      }
    }
  }
}

TEST(CudaKernelsTest, RopeTableMatchesCpuAngles) {
  KVC_REQUIRE_CUDA_DEVICE();
  for (const model::ModelConfig& config :
       {model::Llama32_1BShapeConfig(), model::Qwen3_06BShapeConfig()}) {
    const std::vector<double> inv_freq = cpu::RopeInverseFrequencies(config);
    const int half = config.head_dim / 2;
    std::vector<int32_t> positions = {0, 1, 2, 15, 16, 8191, 8192, 40959, 131071};
    std::mt19937 rng(3);
    for (int i = 0; i < 50; ++i) positions.push_back(int32_t(rng() % 131072));
    const int n = int(positions.size());
    DeviceArray<double> d_inv(inv_freq);
    DeviceArray<int32_t> d_positions(positions);
    DeviceArray<float> d_cos(size_t(n) * half), d_sin(size_t(n) * half);
    ASSERT_EQ(
        LaunchRopeTable(d_positions.get(), n, d_inv.get(), half, d_cos.get(), d_sin.get(), nullptr),
        cudaSuccess);
    const std::vector<float> cos = d_cos.ToHost(), sin = d_sin.ToHost();
    std::vector<float> expected_cos(half), expected_sin(half);
    for (int t = 0; t < n; ++t) {
      cpu::RopeAngles(inv_freq, positions[t], expected_cos.data(), expected_sin.data());
      for (int i = 0; i < half; ++i) {
        // Both round a double cos/sin (each within 2 ulp of exact) to float.
        ASSERT_NEAR(cos[size_t(t) * half + i], expected_cos[i], 2.5e-7) << positions[t] << " " << i;
        ASSERT_NEAR(sin[size_t(t) * half + i], expected_sin[i], 2.5e-7) << positions[t] << " " << i;
      }
    }
  }
}

// out = (x + bias) / sqrt(mean((x + bias)^2) + eps) * weight, in double.
std::vector<double> RmsNormReference(const std::vector<float>& x, const std::vector<float>* bias,
                                     const std::vector<float>& weight,
                                     const std::vector<int32_t>& rows, int n, float eps) {
  std::vector<double> out;
  for (int32_t r : rows) {
    std::vector<double> v(n);
    double ms = 0;
    for (int i = 0; i < n; ++i) {
      v[i] = bias != nullptr ? double(x[size_t(r) * n + i] + (*bias)[i]) : x[size_t(r) * n + i];
      ms += v[i] * v[i];
    }
    const double scale = 1.0 / std::sqrt(ms / n + eps);
    for (int i = 0; i < n; ++i) out.push_back(v[i] * scale * weight[i]);
  }
  return out;
}

TEST(CudaKernelsTest, RmsNormWithBiasAndRowMapMatchesReference) {
  KVC_REQUIRE_CUDA_DEVICE();
  const float eps = 1e-5f;
  for (int n : {64, 1000, 2048}) {
    const int rows = 5;
    const std::vector<float> x = RandomNormal(size_t(rows) * n, uint32_t(n), 3.0f);
    const std::vector<float> bias = RandomNormal(n, 7, 0.5f);
    std::vector<float> weight = RandomNormal(n, 8, 0.1f);
    for (float& w : weight) w += 1.0f;
    for (DType out_dtype : kDTypes) {
      const std::string what = std::to_string(n) + " " + model::DTypeName(out_dtype);
      // With the bias, every row in order: x is updated in place.
      {
        DeviceArray<float> d_x(x), d_bias(bias), d_weight(weight);
        DeviceArray<uint8_t> d_out(size_t(rows) * n * model::DTypeSize(out_dtype));
        ASSERT_EQ(LaunchRmsNorm(d_x.get(), nullptr, rows, n, d_bias.get(), d_weight.get(), eps,
                                d_out.get(), out_dtype, nullptr),
                  cudaSuccess);
        const std::vector<float> updated = d_x.ToHost();
        for (size_t i = 0; i < x.size(); ++i) {
          ASSERT_EQ(updated[i], x[i] + bias[i % n]) << what;
        }
        std::vector<int32_t> all(rows);
        std::iota(all.begin(), all.end(), 0);
        ExpectClose(Decode(d_out.ToHost(), out_dtype),
                    RmsNormReference(x, &bias, weight, all, n, eps), out_dtype, 3.0,
                    what + " bias");
      }
      // A row map (the final norm of the last token of each sequence): out row r from x row
      // rows[r]; x unchanged.
      {
        const std::vector<int32_t> map = {4, 0, 2};
        DeviceArray<float> d_x(x), d_weight(weight);
        DeviceArray<int32_t> d_map(map);
        DeviceArray<uint8_t> d_out(map.size() * n * model::DTypeSize(out_dtype));
        ASSERT_EQ(LaunchRmsNorm(d_x.get(), d_map.get(), int(map.size()), n, nullptr, d_weight.get(),
                                eps, d_out.get(), out_dtype, nullptr),
                  cudaSuccess);
        EXPECT_EQ(d_x.ToHost(), x);
        ExpectClose(Decode(d_out.ToHost(), out_dtype),
                    RmsNormReference(x, nullptr, weight, map, n, eps), out_dtype, 3.0,
                    what + " rows");
      }
    }
  }
  // A bias with a row map is refused (two rows could add it to one source row).
  DeviceArray<float> d_x(64), d_w(64);
  DeviceArray<int32_t> d_map(std::vector<int32_t>{0});
  DeviceArray<float> d_out(64);
  EXPECT_EQ(LaunchRmsNorm(d_x.get(), d_map.get(), 1, 64, d_w.get(), d_w.get(), 1e-5f, d_out.get(),
                          DType::kF32, nullptr),
            cudaErrorInvalidValue);
}

TEST(CudaKernelsTest, SwiGluMatchesReference) {
  KVC_REQUIRE_CUDA_DEVICE();
  const int tokens = 3, inter = 1000;
  const std::vector<float> gate_up = RandomNormal(size_t(tokens) * 2 * inter, 5, 3.0f);
  std::vector<double> expected;
  for (int t = 0; t < tokens; ++t) {
    for (int i = 0; i < inter; ++i) {
      const double g = gate_up[size_t(t) * 2 * inter + i];
      const double u = gate_up[size_t(t) * 2 * inter + inter + i];
      expected.push_back(g / (1.0 + std::exp(-g)) * u);
    }
  }
  for (DType out_dtype : kDTypes) {
    DeviceArray<float> d_in(gate_up);
    DeviceArray<uint8_t> d_out(size_t(tokens) * inter * model::DTypeSize(out_dtype));
    ASSERT_EQ(LaunchSwiGlu(d_in.get(), tokens, inter, d_out.get(), out_dtype, nullptr),
              cudaSuccess);
    ExpectClose(Decode(d_out.ToHost(), out_dtype), expected, out_dtype, 10.0,
                model::DTypeName(out_dtype));
  }
}

struct QkvCase {
  int head_dim;
  DType kv_dtype;
  bool bias;
  bool qk_norm;
  int block_size;
};

void PrintTo(const QkvCase& c, std::ostream* os) {
  *os << "hd" << c.head_dim << "_" << model::DTypeName(c.kv_dtype) << (c.bias ? "_bias" : "")
      << (c.qk_norm ? "_qknorm" : "") << "_bs" << c.block_size;
}

class QkvPostprocessTest : public ::testing::TestWithParam<QkvCase> {};

// Two sequences (3 new tokens after 14 cached, and a fresh 4-token prompt) with scattered
// blocks: q is rewritten in place, k and v land in their slots, nothing else is touched.
TEST_P(QkvPostprocessTest, MatchesCpuSteps) {
  KVC_REQUIRE_CUDA_DEVICE();
  const QkvCase& c = GetParam();
  const int heads = 8, kv_heads = 2, hd = c.head_dim, half = hd / 2, bs = c.block_size;
  const int row = (heads + 2 * kv_heads) * hd;
  const float eps = 1e-6f;
  const std::vector<int32_t> positions = {14, 15, 16, 0, 1, 2, 3};
  const std::vector<int32_t> token_seq = {0, 0, 0, 1, 1, 1, 1};
  const int tokens = int(positions.size());
  const int num_blocks = 12;
  std::vector<int32_t> blocks(num_blocks);
  std::iota(blocks.begin(), blocks.end(), 0);
  std::shuffle(blocks.begin(), blocks.end(), std::mt19937(11));
  const int need0 = (17 + bs - 1) / bs, need1 = (4 + bs - 1) / bs;
  const std::vector<int32_t> indptr = {0, need0, need0 + need1};
  const std::vector<int32_t> indices(blocks.begin(), blocks.begin() + need0 + need1);

  const std::vector<float> qkv = RandomNormal(size_t(tokens) * row, 21, 2.0f);
  const std::vector<float> q_bias = RandomNormal(size_t(heads) * hd, 22, 0.3f);
  const std::vector<float> k_bias = RandomNormal(size_t(kv_heads) * hd, 23, 0.3f);
  const std::vector<float> v_bias = RandomNormal(size_t(kv_heads) * hd, 24, 0.3f);
  std::vector<float> q_norm = RandomNormal(hd, 25, 0.1f), k_norm = RandomNormal(hd, 26, 0.1f);
  for (float& w : q_norm) w += 1.0f;
  for (float& w : k_norm) w += 1.0f;
  model::ModelConfig config = model::Llama32_1BShapeConfig();
  config.head_dim = hd;
  config.rope_scaling->original_max_position_embeddings = 16;  // all three frequency bands
  const std::vector<double> inv_freq = cpu::RopeInverseFrequencies(config);
  std::vector<float> cos(size_t(tokens) * half), sin(size_t(tokens) * half);
  for (int t = 0; t < tokens; ++t) {
    cpu::RopeAngles(inv_freq, positions[t], &cos[size_t(t) * half], &sin[size_t(t) * half]);
  }

  // Host reference: bias, per-head RMSNorm (double), RoPE, in the CPU backend's order.
  const size_t pool_elems = size_t(num_blocks) * kv_heads * bs * hd;
  std::vector<double> expected_q(size_t(tokens) * heads * hd);
  std::vector<double> expected_k(pool_elems, 0.0), expected_v(pool_elems, 0.0);
  std::vector<bool> written(pool_elems, false);
  for (int t = 0; t < tokens; ++t) {
    const int s = token_seq[t], p = positions[t];
    const int32_t block = indices[indptr[s] + p / bs];
    for (int item = 0; item < heads + 2 * kv_heads; ++item) {
      std::vector<double> x(hd);
      const bool is_q = item < heads, is_k = !is_q && item < heads + kv_heads;
      const std::vector<float>& bias = is_q ? q_bias : is_k ? k_bias : v_bias;
      const int head = is_q ? item : is_k ? item - heads : item - heads - kv_heads;
      for (int i = 0; i < hd; ++i) {
        const float raw = qkv[size_t(t) * row + size_t(item) * hd + i];
        x[i] = c.bias ? double(raw + bias[size_t(head) * hd + i]) : double(raw);
      }
      if (!is_q && !is_k) {
        for (int i = 0; i < hd; ++i) {
          const size_t at = ((size_t(block) * kv_heads + head) * bs + p % bs) * hd + i;
          expected_v[at] = x[i];
          written[at] = true;
        }
        continue;
      }
      if (c.qk_norm) {
        const std::vector<float>& w = is_q ? q_norm : k_norm;
        double ms = 0;
        for (double e : x) ms += e * e;
        const double scale = 1.0 / std::sqrt(ms / hd + eps);
        for (int i = 0; i < hd; ++i) x[i] = x[i] * scale * w[i];
      }
      std::vector<double> r(hd);
      for (int i = 0; i < half; ++i) {
        const double cs = cos[size_t(t) * half + i], sn = sin[size_t(t) * half + i];
        r[i] = x[i] * cs - x[i + half] * sn;
        r[i + half] = x[i + half] * cs + x[i] * sn;
      }
      for (int i = 0; i < hd; ++i) {
        if (is_q) {
          expected_q[(size_t(t) * heads + head) * hd + i] = r[i];
        } else {
          expected_k[((size_t(block) * kv_heads + head) * bs + p % bs) * hd + i] = r[i];
        }
      }
    }
  }

  DeviceArray<float> d_qkv(qkv), d_qb(q_bias), d_kb(k_bias), d_vb(v_bias), d_qn(q_norm),
      d_kn(k_norm), d_cos(cos), d_sin(sin);
  DeviceArray<int32_t> d_pos(positions), d_seq(token_seq), d_indptr(indptr), d_indices(indices);
  const size_t pool_bytes = pool_elems * model::DTypeSize(c.kv_dtype);
  DeviceArray<uint8_t> d_k(pool_bytes), d_v(pool_bytes);
  QkvParams params{.qkv = d_qkv.get(),
                   .num_tokens = tokens,
                   .num_heads = heads,
                   .num_kv_heads = kv_heads,
                   .head_dim = hd,
                   .q_bias = c.bias ? d_qb.get() : nullptr,
                   .k_bias = c.bias ? d_kb.get() : nullptr,
                   .v_bias = c.bias ? d_vb.get() : nullptr,
                   .q_norm = c.qk_norm ? d_qn.get() : nullptr,
                   .k_norm = c.qk_norm ? d_kn.get() : nullptr,
                   .eps = eps,
                   .rope_cos = d_cos.get(),
                   .rope_sin = d_sin.get(),
                   .positions = d_pos.get(),
                   .token_seq = d_seq.get(),
                   .kv_indptr = d_indptr.get(),
                   .kv_indices = d_indices.get()};
  const PagedKv kv{.k = d_k.get(),
                   .v = d_v.get(),
                   .dtype = c.kv_dtype,
                   .block_size = bs,
                   .num_kv_heads = kv_heads,
                   .head_dim = hd};
  ASSERT_EQ(LaunchQkvPostprocess(params, kv, nullptr), cudaSuccess);

  const std::vector<float> out = d_qkv.ToHost();
  std::vector<float> q;
  for (int t = 0; t < tokens; ++t) {
    q.insert(q.end(), out.begin() + size_t(t) * row, out.begin() + size_t(t) * row + heads * hd);
    // k and v stay as the projection wrote them.
    for (int i = heads * hd; i < row; ++i)
      ASSERT_EQ(out[size_t(t) * row + i], qkv[size_t(t) * row + i]);
  }
  ExpectClose(q, expected_q, DType::kF32, 3.0, "q");
  const std::vector<float> k = Decode(d_k.ToHost(), c.kv_dtype);
  const std::vector<float> v = Decode(d_v.ToHost(), c.kv_dtype);
  for (size_t i = 0; i < pool_elems; ++i) {
    if (!written[i]) {
      ASSERT_EQ(k[i], 0.0f) << "stray K write at " << i;
      ASSERT_EQ(v[i], 0.0f) << "stray V write at " << i;
    }
  }
  ExpectClose(k, expected_k, c.kv_dtype, 3.0, "k cache");
  ExpectClose(v, expected_v, c.kv_dtype, 3.0, "v cache");
}

INSTANTIATE_TEST_SUITE_P(Cases, QkvPostprocessTest,
                         ::testing::Values(QkvCase{16, DType::kF32, false, false, 16},
                                           QkvCase{64, DType::kBF16, false, false, 16},
                                           QkvCase{64, DType::kBF16, true, false, 5},
                                           QkvCase{128, DType::kBF16, false, true, 16},
                                           QkvCase{128, DType::kF16, true, true, 1},
                                           QkvCase{32, DType::kF32, true, true, 7}));

}  // namespace
}  // namespace kvc::backend::cuda
