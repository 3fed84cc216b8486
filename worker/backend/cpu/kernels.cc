#include "worker/backend/cpu/kernels.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "worker/backend/cpu/simd.h"

namespace kvc::backend::cpu {
namespace {

using model::DType;
using simd::HorizontalSum;
using simd::Load8;
using simd::LoadOne;

// R weight rows x T tokens. Each output keeps one accumulator over k in steps of 8, then the
// horizontal sum, then the scalar tail: the same arithmetic for every (R, T).
template <DType W, int R, int T>
inline void Tile(const float* x, int64_t x_stride, const void* w, int64_t row, int64_t k,
                 float* out, int64_t out_stride, bool accumulate) {
  __m256 acc[R][T];
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
  }
  const int64_t k8 = k & ~int64_t(7);
  for (int64_t i = 0; i < k8; i += 8) {
    __m256 wv[R];
    for (int r = 0; r < R; ++r) wv[r] = Load8<W>(w, (row + r) * k + i);
    for (int t = 0; t < T; ++t) {
      const __m256 xv = _mm256_loadu_ps(x + t * x_stride + i);
      for (int r = 0; r < R; ++r) acc[r][t] = _mm256_fmadd_ps(wv[r], xv, acc[r][t]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) {
      float s = HorizontalSum(acc[r][t]);
      for (int64_t i = k8; i < k; ++i) s += x[t * x_stride + i] * LoadOne<W>(w, (row + r) * k + i);
      float& o = out[t * out_stride + row + r];
      o = accumulate ? o + s : s;
    }
  }
}

// Decode (one token): R rows at a time, the arithmetic of Tile<W, R, 1> (so results match a
// token inside a prefill bit for bit). While it reads rows [row, row + R), it prefetches rows
// [row + R, row + 2R) into L2 at the same offsets, one prefetch per cache line: the hardware
// prefetcher follows each row's stream but does not start the next rows early, and the extra
// reads in flight took batch-1 decode on the 2-core Zen 4 VM from about 65% to over 90% of
// the copy bandwidth (measured with AVX-512 loops too: no faster than these, and slower for
// prefill, whose bf16 widening costs more in 512-bit registers there).
template <DType W, int R>
inline void DecodeTile(const float* x, const void* w, int64_t row, int64_t k, bool prefetch_next,
                       float* out, bool accumulate) {
  constexpr int64_t kElementBytes = W == DType::kF32 ? 4 : 2;
  constexpr int64_t kLineElements = 64 / kElementBytes;
  const char* bytes = static_cast<const char*>(w);
  __m256 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
  const int64_t k8 = k & ~int64_t(7);
  for (int64_t i = 0; i < k8; i += 8) {
    const __m256 xv = _mm256_loadu_ps(x + i);
    for (int r = 0; r < R; ++r)
      acc[r] = _mm256_fmadd_ps(Load8<W>(w, (row + r) * k + i), xv, acc[r]);
    if (prefetch_next && i % kLineElements == 0) {
      for (int r = 0; r < R; ++r) {
        _mm_prefetch(bytes + ((row + R + r) * k + i) * kElementBytes, _MM_HINT_T1);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    float s = HorizontalSum(acc[r]);
    for (int64_t i = k8; i < k; ++i) s += x[i] * LoadOne<W>(w, (row + r) * k + i);
    float& o = out[row + r];
    o = accumulate ? o + s : s;
  }
}

template <DType W>
void MatMulTyped(const float* x, int64_t x_stride, int m, const void* w, int64_t k,
                 int64_t row_begin, int64_t row_end, float* out, int64_t out_stride,
                 bool accumulate) {
  if (m == 1) {
    // Decode: one pass over the weights, 8 rows at a time: 8 independent FMA chains, and 8
    // read streams keep more cache misses in flight than 4 (about 8% more GB/s with two
    // threads on the 2-core Zen 4 VM), plus the next 8 rows prefetched.
    constexpr int kR = 8;
    int64_t r = row_begin;
    for (; r + kR <= row_end; r += kR) {
      DecodeTile<W, kR>(x, w, r, k, /*prefetch_next=*/r + 2 * kR <= row_end, out, accumulate);
    }
    for (; r < row_end; ++r) Tile<W, 1, 1>(x, x_stride, w, r, k, out, out_stride, accumulate);
    return;
  }
  // Tokens in blocks whose activations (about 1 MiB) stay in L2, so each few weight rows,
  // held in L1, meet activations from L2 rather than memory. 1 MiB measured best for k 2048
  // and 8192 on a Zen 4 core (82 and 78 GFLOP/s of ~83 peak, bf16 weights).
  const int64_t token_block = std::clamp<int64_t>((1024 * 1024) / (k * 4) & ~int64_t(3), 4, 256);
  constexpr int kR = 3;
  constexpr int kT = 4;
  for (int64_t t0 = 0; t0 < m; t0 += token_block) {
    const int64_t t1 = std::min<int64_t>(m, t0 + token_block);
    const float* xb = x + t0 * x_stride;
    float* ob = out + t0 * out_stride;
    const int64_t tn = t1 - t0;
    int64_t r = row_begin;
    for (; r + kR <= row_end; r += kR) {
      int64_t t = 0;
      for (; t + kT <= tn; t += kT) {
        Tile<W, kR, kT>(xb + t * x_stride, x_stride, w, r, k, ob + t * out_stride, out_stride,
                        accumulate);
      }
      for (; t < tn; ++t) {
        Tile<W, kR, 1>(xb + t * x_stride, x_stride, w, r, k, ob + t * out_stride, out_stride,
                       accumulate);
      }
    }
    for (; r < row_end; ++r) {
      int64_t t = 0;
      for (; t + kT <= tn; t += kT) {
        Tile<W, 1, kT>(xb + t * x_stride, x_stride, w, r, k, ob + t * out_stride, out_stride,
                       accumulate);
      }
      for (; t < tn; ++t) {
        Tile<W, 1, 1>(xb + t * x_stride, x_stride, w, r, k, ob + t * out_stride, out_stride,
                      accumulate);
      }
    }
  }
}

}  // namespace

void MatMul(const float* x, int64_t x_stride, int m, const void* w, DType w_dtype, int64_t k,
            int64_t row_begin, int64_t row_end, float* out, int64_t out_stride, bool accumulate) {
  if (m <= 0 || row_begin >= row_end) return;
  switch (w_dtype) {
    case DType::kF32:
      return MatMulTyped<DType::kF32>(x, x_stride, m, w, k, row_begin, row_end, out, out_stride,
                                      accumulate);
    case DType::kBF16:
      return MatMulTyped<DType::kBF16>(x, x_stride, m, w, k, row_begin, row_end, out, out_stride,
                                       accumulate);
    case DType::kF16:
      return MatMulTyped<DType::kF16>(x, x_stride, m, w, k, row_begin, row_end, out, out_stride,
                                      accumulate);
  }
}

void ToF32(const void* src, DType dtype, int64_t n, float* dst) {
  switch (dtype) {
    case DType::kF32:
      std::memcpy(dst, src, size_t(n) * sizeof(float));
      return;
    case DType::kBF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = Bf16ToFloat(static_cast<const uint16_t*>(src)[i]);
      return;
    case DType::kF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = _cvtsh_ss(static_cast<const uint16_t*>(src)[i]);
      return;
  }
}

void FromF32(const float* src, int64_t n, DType dtype, void* dst) {
  switch (dtype) {
    case DType::kF32:
      std::memcpy(dst, src, size_t(n) * sizeof(float));
      return;
    case DType::kBF16:
      for (int64_t i = 0; i < n; ++i) static_cast<uint16_t*>(dst)[i] = FloatToBf16(src[i]);
      return;
    case DType::kF16:
      for (int64_t i = 0; i < n; ++i) {
        static_cast<uint16_t*>(dst)[i] = _cvtss_sh(src[i], _MM_FROUND_TO_NEAREST_INT);
      }
      return;
  }
}

void RmsNorm(const float* x, const float* weight, int64_t n, float eps, float* out) {
  __m256 acc = _mm256_setzero_ps();
  const int64_t n8 = n & ~int64_t(7);
  for (int64_t i = 0; i < n8; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    acc = _mm256_fmadd_ps(v, v, acc);
  }
  float sum = HorizontalSum(acc);
  for (int64_t i = n8; i < n; ++i) sum += x[i] * x[i];
  const float scale = 1.0f / std::sqrt(sum / float(n) + eps);
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * scale * weight[i];
}

void SwiGlu(float* gate, const float* up, int64_t n) {
  const __m256 one = _mm256_set1_ps(1.0f);
  const auto silu_mul = [&](__m256 g, __m256 u) {
    const __m256 e = simd::Exp8(_mm256_sub_ps(_mm256_setzero_ps(), g));
    return _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), u);
  };
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(gate + i, silu_mul(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i)));
  }
  if (i < n) {  // the tail through the same vector code, so results do not depend on n
    alignas(32) float g[8] = {}, u[8] = {};
    for (int64_t j = 0; i + j < n; ++j) {
      g[j] = gate[i + j];
      u[j] = up[i + j];
    }
    _mm256_store_ps(g, silu_mul(_mm256_load_ps(g), _mm256_load_ps(u)));
    for (int64_t j = 0; i + j < n; ++j) gate[i + j] = g[j];
  }
}

void AddInPlace(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

}  // namespace kvc::backend::cpu
