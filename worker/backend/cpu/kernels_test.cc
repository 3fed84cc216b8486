#include "worker/backend/cpu/kernels.h"

#include <immintrin.h>

#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "worker/backend/cpu/rope.h"
#include "worker/backend/cpu/simd.h"
#include "worker/backend/cpu/thread_pool.h"

namespace kvc::backend::cpu {
namespace {

using model::DType;

std::vector<uint8_t> Encode(const std::vector<float>& values, DType dtype) {
  std::vector<uint8_t> out(values.size() * ElementBytes(dtype));
  FromF32(values.data(), int64_t(values.size()), dtype, out.data());
  return out;
}

class MatMulTest : public ::testing::TestWithParam<DType> {};

// Every (m, k, row range) against a double-precision loop over the same (rounded) weights,
// including k not a multiple of 8 and row ranges that do not start at 0.
TEST_P(MatMulTest, MatchesNaiveProduct) {
  const DType dtype = GetParam();
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> dist(-1, 1);
  for (int m : {1, 2, 3, 4, 5, 9, 70}) {
    for (int64_t k : {1, 7, 8, 24, 37, 64}) {
      // Enough rows for several 8-row decode tiles, with and without prefetching the next.
      const int64_t rows = m == 1 ? 37 : 13;
      std::vector<float> x(size_t(m) * k), w(size_t(rows) * k);
      for (float& e : x) e = dist(rng);
      for (float& e : w) e = dist(rng);
      const std::vector<uint8_t> encoded = Encode(w, dtype);
      std::vector<float> rounded(w.size());
      ToF32(encoded.data(), dtype, int64_t(w.size()), rounded.data());
      std::vector<float> out(size_t(m) * rows, 5.0f);
      MatMul(x.data(), k, m, encoded.data(), dtype, k, 2, rows, out.data(), rows, false);
      for (int t = 0; t < m; ++t) {
        EXPECT_EQ(out[size_t(t) * rows + 0], 5.0f) << "rows outside the range stay untouched";
        EXPECT_EQ(out[size_t(t) * rows + 1], 5.0f);
        for (int64_t r = 2; r < rows; ++r) {
          double expected = 0;
          for (int64_t i = 0; i < k; ++i) expected += double(x[t * k + i]) * rounded[r * k + i];
          EXPECT_NEAR(out[size_t(t) * rows + r], expected, 1e-5 * k) << m << " " << k << " " << r;
        }
      }
    }
  }
}

// A token's outputs are bit-identical whatever else is in the batch (the no-KV-cache mode
// relies on it).
TEST_P(MatMulTest, OutputIndependentOfBatch) {
  const DType dtype = GetParam();
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> dist(-1, 1);
  const int m = 23;
  const int64_t k = 75, rows = 29;
  std::vector<float> x(size_t(m) * k), w(size_t(rows) * k);
  for (float& e : x) e = dist(rng);
  for (float& e : w) e = dist(rng);
  const std::vector<uint8_t> encoded = Encode(w, dtype);
  std::vector<float> batched(size_t(m) * rows);
  MatMul(x.data(), k, m, encoded.data(), dtype, k, 0, rows, batched.data(), rows, false);
  for (int t = 0; t < m; ++t) {
    std::vector<float> single(rows);
    MatMul(x.data() + t * k, k, 1, encoded.data(), dtype, k, 0, rows, single.data(), rows, false);
    for (int64_t r = 0; r < rows; ++r) ASSERT_EQ(single[r], batched[size_t(t) * rows + r]);
  }
}

INSTANTIATE_TEST_SUITE_P(AllDTypes, MatMulTest,
                         ::testing::Values(DType::kF32, DType::kBF16, DType::kF16));

TEST(ConversionTest, PortableHalfMatchesF16c) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> dist(-70000, 70000);
  for (int i = 0; i < 10000; ++i) {
    float f = dist(rng) * std::pow(2.0f, float(-int(rng() % 20)));
    if (std::fabs(f) < 6.2e-5f) continue;  // FloatToHalf flushes half subnormals
    EXPECT_EQ(FloatToHalf(f), _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT)) << f;
  }
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float a = HalfToFloat(uint16_t(h)), b = _cvtsh_ss(uint16_t(h));
    if (std::isnan(b)) {
      EXPECT_TRUE(std::isnan(a));
    } else {
      EXPECT_EQ(a, b) << h;
    }
  }
}

TEST(SimdTest, ExpIsAccurate) {
  for (float x = -87.0f; x < 88.0f; x += 0.0137f) {
    alignas(32) float out[8];
    _mm256_store_ps(out, simd::Exp8(_mm256_set1_ps(x)));
    const double expected = std::exp(double(x));
    ASSERT_NEAR(out[0], expected, 3e-7 * expected) << x;
  }
  alignas(32) float out[8];
  _mm256_store_ps(out, simd::Exp8(_mm256_set1_ps(-INFINITY)));
  EXPECT_EQ(out[0], 0.0f);
}

TEST(KernelsTest, SwiGluMatchesFormula) {
  std::vector<float> gate(37), up(37);
  for (int i = 0; i < 37; ++i) {
    gate[i] = float(i - 18) * 0.7f;
    up[i] = float(i % 5) - 2.0f;
  }
  std::vector<float> out = gate;
  SwiGlu(out.data(), up.data(), 37);
  for (int i = 0; i < 37; ++i) {
    const double g = gate[i];
    EXPECT_NEAR(out[i], g / (1 + std::exp(-g)) * up[i], 1e-5) << i;
  }
}

TEST(ConversionTest, Bf16RoundsToNearestEven) {
  EXPECT_EQ(FloatToBf16(1.0f), 0x3f80);
  // 1 + 2^-8 is halfway between two bf16 values: ties go to the even one (1.0).
  EXPECT_EQ(FloatToBf16(1.0f + 0x1.0p-8f), 0x3f80);
  EXPECT_EQ(FloatToBf16(1.0f + 0x1.8p-8f), 0x3f81);
  EXPECT_EQ(Bf16ToFloat(0xc000), -2.0f);
}

TEST(RopeTest, Llama3ScalingBands) {
  model::ModelConfig c;
  c.head_dim = 64;
  c.rope_theta = 500000.0;
  const std::vector<double> plain = RopeInverseFrequencies(c);
  c.rope_scaling = model::Llama3RopeScaling{32.0, 1.0, 4.0, 8192};
  const std::vector<double> scaled = RopeInverseFrequencies(c);
  ASSERT_EQ(plain.size(), 32u);
  for (size_t i = 0; i < plain.size(); ++i) {
    const double wavelen = 2 * M_PI / plain[i];
    if (wavelen < 8192 / 4.0) {
      EXPECT_EQ(scaled[i], plain[i]) << i;
    } else if (wavelen > 8192 / 1.0) {
      EXPECT_DOUBLE_EQ(scaled[i], plain[i] / 32.0) << i;
    } else {
      EXPECT_LT(scaled[i], plain[i]);
      EXPECT_GT(scaled[i], plain[i] / 32.0);
    }
  }
  EXPECT_DOUBLE_EQ(plain[0], 1.0);
  EXPECT_DOUBLE_EQ(plain[1], std::pow(500000.0, -2.0 / 64));
}

TEST(ThreadPoolTest, CoversEveryIndexOnce) {
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    for (int round = 0; round < 200; ++round) {
      const int64_t n = round * 7 + 1;
      std::vector<std::atomic<int>> hits(n);
      std::atomic<bool> bad_thread{false};
      pool.ParallelFor(n, 1 + round % 5, [&](int thread_index, int64_t begin, int64_t end) {
        if (thread_index < 0 || thread_index >= threads) bad_thread = true;
        for (int64_t i = begin; i < end; ++i) hits[i]++;
      });
      ASSERT_FALSE(bad_thread);
      for (const auto& h : hits) ASSERT_EQ(h.load(), 1);
    }
  }
}

}  // namespace
}  // namespace kvc::backend::cpu
