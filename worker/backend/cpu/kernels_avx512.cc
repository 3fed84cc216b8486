// The AVX-512 instantiation of MatMul. Compiled with -mavx512f; runs only after
// CpuSupportsAvx512Kernels(). Everything here has internal linkage and calls no inline
// function of a shared header, so no AVX-512 code can stand in for a copy another file
// compiled for AVX2.
#include <immintrin.h>

#include <cstring>

#include "worker/backend/cpu/kernels.h"
#include "worker/backend/cpu/matmul_impl.h"

namespace kvc::backend::cpu {
namespace {

using model::DType;

struct Avx512 {
  using V = __m512;
  static constexpr int kLanes = 16;
  static V Zero() { return _mm512_setzero_ps(); }
  static V LoadX(const float* x) { return _mm512_loadu_ps(x); }
  template <DType W>
  static V LoadW(const void* base, int64_t i) {
    if constexpr (W == DType::kF32) {
      return _mm512_loadu_ps(static_cast<const float*>(base) + i);
    } else {
      const __m256i h = _mm256_loadu_si256(
          reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(base) + i));
      if constexpr (W == DType::kBF16) {
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
      } else {
        return _mm512_cvtph_ps(h);
      }
    }
  }
  template <DType W>
  static float LoadOne(const void* base, int64_t i) {
    if constexpr (W == DType::kF32) {
      return static_cast<const float*>(base)[i];
    } else if constexpr (W == DType::kBF16) {
      const uint32_t wide = uint32_t(static_cast<const uint16_t*>(base)[i]) << 16;
      float f;
      std::memcpy(&f, &wide, sizeof(f));
      return f;
    } else {
      return _cvtsh_ss(static_cast<const uint16_t*>(base)[i]);
    }
  }
  static V Fma(V a, V b, V acc) { return _mm512_fmadd_ps(a, b, acc); }
  // A fixed order: halves, then the AVX2 order on the 8 remaining lanes.
  static float Sum(V v) {
    const __m256 lo = _mm512_castps512_ps256(v);
    const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    const __m256 s8 = _mm256_add_ps(lo, hi);
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 0x55));
    return _mm_cvtss_f32(s);
  }
};

}  // namespace

void MatMulAvx512(const float* x, int64_t x_stride, int m, const void* w, DType w_dtype, int64_t k,
                  int64_t row_begin, int64_t row_end, float* out, int64_t out_stride,
                  bool accumulate) {
  matmul_impl::MatMulAnyDType<Avx512>(x, x_stride, m, w, w_dtype, k, row_begin, row_end, out,
                                      out_stride, accumulate);
}

}  // namespace kvc::backend::cpu
