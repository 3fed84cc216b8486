// Numeric kernels of the CPU backend: matrix products over f32 / bf16 / f16 weights used in
// place, RMSNorm, SwiGLU and dtype conversion. Raw pointers only; no allocation, no threads (the
// caller splits work between threads by output rows or tokens).
//
// Every output element of MatMul is computed with the same sequence of float operations
// whatever the number of tokens, the tile shape or the row range, so a token's activations do
// not depend on what else is in its batch: a decode step gives bit-identical logits to the same
// token inside a long prefill. The "no KV cache" mode relies on that.
//
// The .cc is compiled with -mavx2 -mfma -mf16c; call these only after CpuSupportsKernels().
#ifndef KVCLUSTER_WORKER_BACKEND_CPU_KERNELS_H_
#define KVCLUSTER_WORKER_BACKEND_CPU_KERNELS_H_

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "worker/model/model.h"

namespace kvc::backend::cpu {

// Bytes per element; kept here so the backend does not depend on the loader's library.
inline size_t ElementBytes(model::DType dtype) { return dtype == model::DType::kF32 ? 4 : 2; }

inline float Bf16ToFloat(uint16_t bits) {
  uint32_t wide = uint32_t(bits) << 16;
  float f;
  std::memcpy(&f, &wide, sizeof(f));
  return f;
}

// Round to nearest even, as PyTorch does; NaN stays NaN.
inline uint16_t FloatToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  if ((bits & 0x7fffffffu) > 0x7f800000u) return uint16_t((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return uint16_t(bits >> 16);
}

// Portable IEEE half <-> float (the kernels use F16C; these serve code built for any x86-64).
inline float HalfToFloat(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  uint32_t mantissa = h & 0x3ffu;
  uint32_t bits;
  if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | (mantissa << 13);  // inf, NaN
  } else if (exponent != 0) {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    bits = sign;
  } else {  // subnormal: normalise
    int e = 113;
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      --e;
    }
    bits = sign | (uint32_t(e) << 23) | ((mantissa & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

// Round to nearest even; overflow to inf. Subnormal results are flushed to zero, which only
// matters for generating test weights.
inline uint16_t FloatToHalf(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  const uint16_t sign = uint16_t((bits >> 16) & 0x8000u);
  const uint32_t abs = bits & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7e00u;
  if (abs >= 0x477ff000u) return sign | 0x7c00u;  // rounds past 65504
  if (abs < 0x38800000u) return sign;             // below the smallest normal half
  uint32_t rounded = abs + 0xfffu + ((abs >> 13) & 1u);
  return uint16_t(sign | ((rounded - 0x38000000u) >> 13));
}

// True when this CPU has the instructions the kernels were compiled for (AVX2, FMA, F16C).
// Defined in a file compiled without them, so calling it is safe anywhere.
bool CpuSupportsKernels();

// out[t * out_stride + r] = dot(x[t * x_stride .. + k], w[r * k .. + k]) (+= when accumulate)
// for t in [0, m), r in [row_begin, row_end). `w` is row-major [rows, k] of `w_dtype`.
void MatMul(const float* x, int64_t x_stride, int m, const void* w, model::DType w_dtype, int64_t k,
            int64_t row_begin, int64_t row_end, float* out, int64_t out_stride, bool accumulate);

// Converts n elements between f32 and `dtype` (rounding to nearest even).
void ToF32(const void* src, model::DType dtype, int64_t n, float* dst);
void FromF32(const float* src, int64_t n, model::DType dtype, void* dst);

// out = x / sqrt(mean(x^2) + eps) * weight, over n elements. out may alias x.
void RmsNorm(const float* x, const float* weight, int64_t n, float eps, float* out);

// gate[i] = silu(gate[i]) * up[i].
void SwiGlu(float* gate, const float* up, int64_t n);

// y[i] += x[i].
void AddInPlace(float* y, const float* x, int64_t n);

}  // namespace kvc::backend::cpu

#endif  // KVCLUSTER_WORKER_BACKEND_CPU_KERNELS_H_
