// AVX2 helpers shared by the kernel files. Include only from sources compiled with
// -mavx2 -mfma -mf16c.
#ifndef KVCLUSTER_WORKER_BACKEND_CPU_SIMD_H_
#define KVCLUSTER_WORKER_BACKEND_CPU_SIMD_H_

#include <immintrin.h>

#include <cstdint>

#include "worker/backend/cpu/kernels.h"
#include "worker/model/model.h"

namespace kvc::backend::cpu::simd {

using model::DType;

// Loads 8 weights starting at element `i` as floats. bf16 widens by a 16-bit shift; f16 uses
// F16C. Weights stay in their stored dtype in memory: decode is bound by the bytes it reads.
template <DType W>
inline __m256 Load8(const void* base, int64_t i) {
  if constexpr (W == DType::kF32) {
    return _mm256_loadu_ps(static_cast<const float*>(base) + i);
  } else if constexpr (W == DType::kBF16) {
    const __m128i h =
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(base) + i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  } else {
    const __m128i h =
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(base) + i));
    return _mm256_cvtph_ps(h);
  }
}

template <DType W>
inline float LoadOne(const void* base, int64_t i) {
  if constexpr (W == DType::kF32) {
    return static_cast<const float*>(base)[i];
  } else if constexpr (W == DType::kBF16) {
    return Bf16ToFloat(static_cast<const uint16_t*>(base)[i]);
  } else {
    return _cvtsh_ss(static_cast<const uint16_t*>(base)[i]);
  }
}

// A fixed reduction order, shared by every tile shape.
inline float HorizontalSum(__m256 v) {
  const __m128 lo = _mm256_castps256_ps128(v);
  const __m128 hi = _mm256_extractf128_ps(v, 1);
  __m128 s = _mm_add_ps(lo, hi);
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 0x55));
  return _mm_cvtss_f32(s);
}

// e^x for 8 floats, relative error below 2e-7 (Cephes expf: x = n ln2 + r, |r| <= ln2 / 2,
// degree-6 polynomial for e^r, 2^n added to the exponent bits). Inputs below -87.3 give 0,
// so exp(-inf) = 0 as softmax needs; inputs above 88.37 are clamped to it (about 2^127).
inline __m256 Exp8(__m256 x) {
  const __m256 min_x = _mm256_set1_ps(-87.33654f);
  const __m256 underflow = _mm256_cmp_ps(x, min_x, _CMP_LT_OQ);
  x = _mm256_min_ps(_mm256_max_ps(x, min_x), _mm256_set1_ps(88.3762626647949f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  // r = x - n ln2, with ln2 split in two so that n * ln2_hi is exact.
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  // 2^n as float bits: n is in [-126, 127] after the clamps, a normal exponent.
  const __m256i n_int = _mm256_cvtps_epi32(n);
  const __m256i exponent = _mm256_slli_epi32(_mm256_add_epi32(n_int, _mm256_set1_epi32(127)), 23);
  const __m256 result = _mm256_mul_ps(p, _mm256_castsi256_ps(exponent));
  return _mm256_andnot_ps(underflow, result);
}

}  // namespace kvc::backend::cpu::simd

#endif  // KVCLUSTER_WORKER_BACKEND_CPU_SIMD_H_
