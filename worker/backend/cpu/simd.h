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

}  // namespace kvc::backend::cpu::simd

#endif  // KVCLUSTER_WORKER_BACKEND_CPU_SIMD_H_
