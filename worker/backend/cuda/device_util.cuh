// Device-side helpers shared by the CUDA kernels: element conversions for the three storage
// dtypes, 16-byte vector unpacking, and warp / block reductions whose order of operations is
// fixed (so every run of a kernel gives the same bits). Internal to worker/backend/cuda.
#ifndef KVCLUSTER_WORKER_BACKEND_CUDA_DEVICE_UTIL_CUH_
#define KVCLUSTER_WORKER_BACKEND_CUDA_DEVICE_UTIL_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "worker/model/model.h"

namespace kvc::backend::cuda::device {

using model::DType;

// --- Scalar conversions. bf16 and f16 are handled as raw 16-bit patterns; float -> 16-bit
// rounds to nearest even, as the CPU backend's FromF32 does.

__device__ __forceinline__ float Bf16BitsToFloat(uint32_t bits16) {
  return __uint_as_float(bits16 << 16);
}
__device__ __forceinline__ float F16BitsToFloat(uint32_t bits16) {
  return __half2float(__ushort_as_half(static_cast<unsigned short>(bits16)));
}

// Element `i` of an array of `dtype`, as float.
__device__ __forceinline__ float LoadAs(const void* data, size_t i, DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return static_cast<const float*>(data)[i];
    case DType::kBF16:
      return Bf16BitsToFloat(static_cast<const uint16_t*>(data)[i]);
    case DType::kF16:
      return F16BitsToFloat(static_cast<const uint16_t*>(data)[i]);
  }
  return 0.0f;
}

// Stores `value` as element `i` of an array of `dtype`.
__device__ __forceinline__ void StoreAs(void* data, size_t i, DType dtype, float value) {
  switch (dtype) {
    case DType::kF32:
      static_cast<float*>(data)[i] = value;
      return;
    case DType::kBF16:
      static_cast<uint16_t*>(data)[i] = __bfloat16_as_ushort(__float2bfloat16_rn(value));
      return;
    case DType::kF16:
      static_cast<uint16_t*>(data)[i] = __half_as_ushort(__float2half_rn(value));
      return;
  }
}

// --- 16-byte vectors: kVec elements of a storage type, unpacked to floats in memory order
// (element 2j is the low half of 32-bit word j: the machine is little-endian).

struct F32Vec {
  static constexpr DType kDType = DType::kF32;
  static constexpr int kVec = 4;
  __device__ __forceinline__ static void Unpack(const uint4& u, float* out) {
    out[0] = __uint_as_float(u.x);
    out[1] = __uint_as_float(u.y);
    out[2] = __uint_as_float(u.z);
    out[3] = __uint_as_float(u.w);
  }
};

struct Bf16Vec {
  static constexpr DType kDType = DType::kBF16;
  static constexpr int kVec = 8;
  __device__ __forceinline__ static void Unpack(const uint4& u, float* out) {
    const uint32_t words[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      out[2 * j] = __uint_as_float(words[j] << 16);
      out[2 * j + 1] = __uint_as_float(words[j] & 0xffff0000u);
    }
  }
};

struct F16Vec {
  static constexpr DType kDType = DType::kF16;
  static constexpr int kVec = 8;
  __device__ __forceinline__ static void Unpack(const uint4& u, float* out) {
    const uint32_t words[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      out[2 * j] = F16BitsToFloat(words[j] & 0xffffu);
      out[2 * j + 1] = F16BitsToFloat(words[j] >> 16);
    }
  }
};

// --- Reductions. Butterfly (xor) shuffles: every lane ends with the same value.

__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__device__ __forceinline__ float WarpMax(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  }
  return v;
}

template <typename T>
__device__ __forceinline__ T WarpSumT(T v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Sum over the whole block; every thread gets the same value. blockDim.x must be a multiple of
// 32 (at most 1024), and every thread of the block must call it (it synchronizes). The warps'
// sums are added in warp order by every thread, so the result does not depend on timing.
template <typename T>
__device__ T BlockSum(T v) {
  __shared__ T warp_sums[32];
  v = WarpSumT(v);
  __syncthreads();  // a previous call's readers are done with warp_sums
  if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = v;
  __syncthreads();
  T total = 0;
  const int warps = blockDim.x / 32;
  for (int w = 0; w < warps; ++w) total += warp_sums[w];
  return total;
}

}  // namespace kvc::backend::cuda::device

#endif  // KVCLUSTER_WORKER_BACKEND_CUDA_DEVICE_UTIL_CUH_
