#include "worker/backend/cpu/kernels.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string_view>

#include "worker/backend/cpu/matmul_impl.h"
#include "worker/backend/cpu/simd.h"

namespace kvc::backend::cpu {
namespace {

using model::DType;
using simd::HorizontalSum;
using simd::Load8;
using simd::LoadOne;

// The AVX2 instantiation of the MatMul loops (matmul_impl.h).
struct Avx2 {
  using V = __m256;
  static constexpr int kLanes = 8;
  static V Zero() { return _mm256_setzero_ps(); }
  static V LoadX(const float* x) { return _mm256_loadu_ps(x); }
  template <DType W>
  static V LoadW(const void* base, int64_t i) {
    return Load8<W>(base, i);
  }
  template <DType W>
  static float LoadOne(const void* base, int64_t i) {
    return simd::LoadOne<W>(base, i);
  }
  static V Fma(V a, V b, V acc) { return _mm256_fmadd_ps(a, b, acc); }
  static float Sum(V v) { return HorizontalSum(v); }
};

}  // namespace

KernelIsa ActiveKernelIsa() {
  static const KernelIsa isa = [] {
    const char* forced = std::getenv("KVC_CPU_KERNELS");
    if (forced != nullptr && std::string_view(forced) == "avx2") return KernelIsa::kAvx2;
    return CpuSupportsAvx512Kernels() ? KernelIsa::kAvx512 : KernelIsa::kAvx2;
  }();
  return isa;
}

const char* KernelIsaName(KernelIsa isa) { return isa == KernelIsa::kAvx512 ? "avx512" : "avx2"; }

void MatMulWithIsa(KernelIsa isa, const float* x, int64_t x_stride, int m, const void* w,
                   DType w_dtype, int64_t k, int64_t row_begin, int64_t row_end, float* out,
                   int64_t out_stride, bool accumulate) {
  if (isa == KernelIsa::kAvx512) {
    return MatMulAvx512(x, x_stride, m, w, w_dtype, k, row_begin, row_end, out, out_stride,
                        accumulate);
  }
  matmul_impl::MatMulAnyDType<Avx2>(x, x_stride, m, w, w_dtype, k, row_begin, row_end, out,
                                    out_stride, accumulate);
}

void MatMul(const float* x, int64_t x_stride, int m, const void* w, DType w_dtype, int64_t k,
            int64_t row_begin, int64_t row_end, float* out, int64_t out_stride, bool accumulate) {
  MatMulWithIsa(ActiveKernelIsa(), x, x_stride, m, w, w_dtype, k, row_begin, row_end, out,
                out_stride, accumulate);
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
