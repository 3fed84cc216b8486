// Scalar conversions between float and the 16-bit storage types of DType. Round-to-nearest-
// even like PyTorch, so files written with these read back exactly as PyTorch would store the
// same float values. Header-only and stateless: safe from any thread.
#ifndef KVCLUSTER_WORKER_MODEL_DTYPE_CONVERT_H_
#define KVCLUSTER_WORKER_MODEL_DTYPE_CONVERT_H_

#include <bit>
#include <cstdint>

#include "worker/model/model.h"

namespace kvc::model {

inline float BF16ToFloat(uint16_t bits) { return std::bit_cast<float>(uint32_t(bits) << 16); }

inline uint16_t FloatToBF16(float value) {
  uint32_t bits = std::bit_cast<uint32_t>(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return uint16_t((bits >> 16) | 0x40);  // quiet NaN
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return uint16_t(bits >> 16);
}

inline float F16ToFloat(uint16_t half) {
  const uint32_t sign = uint32_t(half & 0x8000u) << 16;
  const uint32_t exponent = (half >> 10) & 0x1fu;
  uint32_t mantissa = half & 0x3ffu;
  if (exponent == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
  if (exponent != 0) {
    return std::bit_cast<float>(sign | ((exponent + 112u) << 23) | (mantissa << 13));
  }
  if (mantissa == 0) return std::bit_cast<float>(sign);
  // Subnormal half: every one of them is a normal float.
  int shift = 0;
  while ((mantissa & 0x400u) == 0) {
    mantissa <<= 1;
    ++shift;
  }
  mantissa &= 0x3ffu;
  return std::bit_cast<float>(sign | (uint32_t(113 - shift) << 23) | (mantissa << 13));
}

inline uint16_t FloatToF16(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  const uint16_t sign = uint16_t((bits >> 16) & 0x8000u);
  const uint32_t abs = bits & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7e00u;   // NaN
  if (abs >= 0x477ff000u) return sign | 0x7c00u;  // rounds to or past infinity
  const int exponent = int(abs >> 23) - 127;
  if (exponent < -25) return sign;  // below half the smallest subnormal
  uint32_t mantissa = (abs & 0x7fffffu) | 0x800000u;
  // Shift so the 10 kept mantissa bits are at the bottom; normals keep 13 fewer bits,
  // subnormals more.
  const int shift = exponent < -14 ? 13 + (-14 - exponent) : 13;
  const uint32_t kept = mantissa >> shift;
  const uint32_t rest = mantissa & ((1u << shift) - 1u);
  const uint32_t half_way = 1u << (shift - 1);
  uint32_t rounded = kept + ((rest > half_way || (rest == half_way && (kept & 1u))) ? 1u : 0u);
  if (exponent < -14) return sign | uint16_t(rounded);  // may carry into the smallest normal
  // Normal: the implicit bit sits at bit 10; a carry out of the mantissa bumps the exponent.
  const uint32_t biased = uint32_t(exponent + 15);
  return sign | uint16_t((biased << 10) + (rounded - 0x400u));
}

// Reads element `index` of a tensor of `dtype` as float (for tests and reference code).
inline float LoadAsFloat(const void* data, DType dtype, int64_t index) {
  switch (dtype) {
    case DType::kF32:
      return static_cast<const float*>(data)[index];
    case DType::kBF16:
      return BF16ToFloat(static_cast<const uint16_t*>(data)[index]);
    case DType::kF16:
      return F16ToFloat(static_cast<const uint16_t*>(data)[index]);
  }
  return 0.0f;
}

}  // namespace kvc::model

#endif  // KVCLUSTER_WORKER_MODEL_DTYPE_CONVERT_H_
