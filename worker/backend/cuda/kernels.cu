#include "worker/backend/cuda/device_util.cuh"
#include "worker/backend/cuda/kernels.h"

namespace kvc::backend::cuda {
namespace {

using device::LoadAs;
using device::StoreAs;
using model::DType;

constexpr int kRowThreads = 256;  // one block per row for the row-wise kernels
constexpr int kQkvThreads = 128;  // four warps, each one head at a time
constexpr int kMaxHalfHeadDim = 128;

__global__ void EmbeddingKernel(const int32_t* token_ids, const void* embed, DType dtype,
                                int hidden, float* x) {
  const int t = blockIdx.x;
  const size_t src = size_t(token_ids[t]) * hidden;
  float* row = x + size_t(t) * hidden;
  for (int i = threadIdx.x; i < hidden; i += blockDim.x) row[i] = LoadAs(embed, src + i, dtype);
}

__global__ void RopeTableKernel(const int32_t* positions, const double* inv_freq, int half,
                                float* cos_out, float* sin_out) {
  const int t = blockIdx.x;
  const double position = double(positions[t]);
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    const double angle = position * inv_freq[i];
    cos_out[size_t(t) * half + i] = float(cos(angle));
    sin_out[size_t(t) * half + i] = float(sin(angle));
  }
}

__global__ void RmsNormKernel(float* x, const int32_t* rows, int n, const float* bias,
                              const float* weight, float eps, void* out, DType out_dtype) {
  const int r = blockIdx.x;
  float* src = x + size_t(rows != nullptr ? rows[r] : r) * n;
  float sum_squares = 0.0f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    float v = src[i];
    if (bias != nullptr) {
      v += bias[i];
      src[i] = v;  // read back below by this same thread only
    }
    sum_squares += v * v;
  }
  sum_squares = device::BlockSum(sum_squares);
  const float scale = 1.0f / sqrtf(sum_squares / float(n) + eps);
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    StoreAs(out, size_t(r) * n + i, out_dtype, src[i] * scale * weight[i]);
  }
}

// One block per token; warp w takes the heads w, w + 4, ... of the token's q, k and v heads in
// that order (the order of the projection's output row). Lane l holds the RoPE pairs
// (i, i + half) for i = l, l + 32, ... < half.
__global__ void __launch_bounds__(kQkvThreads) QkvKernel(QkvParams p, PagedKv kv) {
  constexpr int kPairsPerLane = kMaxHalfHeadDim / 32;
  const int t = blockIdx.x;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int hd = p.head_dim, half = hd / 2;
  const int heads = p.num_heads, kv_heads = p.num_kv_heads;
  float* row = p.qkv + size_t(t) * (heads + 2 * kv_heads) * hd;
  const float* cos = p.rope_cos + size_t(t) * half;
  const float* sin = p.rope_sin + size_t(t) * half;
  const int position = p.positions[t];
  const int32_t block = p.kv_indices[p.kv_indptr[p.token_seq[t]] + position / kv.block_size];
  const int slot = position % kv.block_size;

  for (int item = warp; item < heads + 2 * kv_heads; item += kQkvThreads / 32) {
    const bool is_q = item < heads;
    const bool is_k = !is_q && item < heads + kv_heads;
    const bool is_v = !is_q && !is_k;
    float* x = row + size_t(item) * hd;
    const float* bias = nullptr;
    if (p.q_bias != nullptr) {
      bias = is_q   ? p.q_bias + size_t(item) * hd
             : is_k ? p.k_bias + size_t(item - heads) * hd
                    : p.v_bias + size_t(item - heads - kv_heads) * hd;
    }
    float a[kPairsPerLane], b[kPairsPerLane];
#pragma unroll
    for (int c = 0; c < kPairsPerLane; ++c) {
      const int i = lane + 32 * c;
      a[c] = 0.0f;
      b[c] = 0.0f;
      if (i < half) {
        a[c] = x[i] + (bias != nullptr ? bias[i] : 0.0f);
        b[c] = x[i + half] + (bias != nullptr ? bias[i + half] : 0.0f);
      }
    }
    if (!is_v) {
      const float* norm = is_q ? p.q_norm : p.k_norm;
      if (norm != nullptr) {
        float sum_squares = 0.0f;
#pragma unroll
        for (int c = 0; c < kPairsPerLane; ++c) sum_squares += a[c] * a[c] + b[c] * b[c];
        sum_squares = device::WarpSum(sum_squares);
        const float scale = 1.0f / sqrtf(sum_squares / float(hd) + p.eps);
#pragma unroll
        for (int c = 0; c < kPairsPerLane; ++c) {
          const int i = lane + 32 * c;
          if (i < half) {
            a[c] = a[c] * scale * norm[i];
            b[c] = b[c] * scale * norm[i + half];
          }
        }
      }
#pragma unroll
      for (int c = 0; c < kPairsPerLane; ++c) {
        const int i = lane + 32 * c;
        if (i < half) {
          const float ra = a[c] * cos[i] - b[c] * sin[i];
          const float rb = b[c] * cos[i] + a[c] * sin[i];
          a[c] = ra;
          b[c] = rb;
        }
      }
    }
    if (is_q) {
#pragma unroll
      for (int c = 0; c < kPairsPerLane; ++c) {
        const int i = lane + 32 * c;
        if (i < half) {
          x[i] = a[c];
          x[i + half] = b[c];
        }
      }
    } else {
      const int kv_head = is_k ? item - heads : item - heads - kv_heads;
      const size_t base = ((size_t(block) * kv_heads + kv_head) * kv.block_size + slot) * hd;
      void* dst = is_k ? kv.k : kv.v;
#pragma unroll
      for (int c = 0; c < kPairsPerLane; ++c) {
        const int i = lane + 32 * c;
        if (i < half) {
          StoreAs(dst, base + i, kv.dtype, a[c]);
          StoreAs(dst, base + i + half, kv.dtype, b[c]);
        }
      }
    }
  }
}

__global__ void SwiGluKernel(const float* gate_up, int64_t total, int inter, void* out,
                             DType out_dtype) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= total) return;
  const int64_t t = idx / inter, i = idx % inter;
  const float g = gate_up[t * 2 * inter + i];
  const float u = gate_up[t * 2 * inter + inter + i];
  StoreAs(out, size_t(idx), out_dtype, g / (1.0f + expf(-g)) * u);
}

}  // namespace

cudaError_t CheckKernelImage() {
  cudaFuncAttributes attributes;
  return cudaFuncGetAttributes(&attributes, EmbeddingKernel);
}

cudaError_t LaunchEmbedding(const int32_t* token_ids, int num_tokens, const void* embed,
                            DType dtype, int hidden, float* x, cudaStream_t stream) {
  if (num_tokens <= 0 || hidden <= 0) return num_tokens == 0 ? cudaSuccess : cudaErrorInvalidValue;
  EmbeddingKernel<<<num_tokens, kRowThreads, 0, stream>>>(token_ids, embed, dtype, hidden, x);
  return cudaGetLastError();
}

cudaError_t LaunchRopeTable(const int32_t* positions, int num_tokens, const double* inv_freq,
                            int half, float* cos, float* sin, cudaStream_t stream) {
  if (num_tokens <= 0 || half <= 0) return num_tokens == 0 ? cudaSuccess : cudaErrorInvalidValue;
  RopeTableKernel<<<num_tokens, 64, 0, stream>>>(positions, inv_freq, half, cos, sin);
  return cudaGetLastError();
}

cudaError_t LaunchRmsNorm(float* x, const int32_t* rows, int num_rows, int n, const float* bias,
                          const float* weight, float eps, void* out, DType out_dtype,
                          cudaStream_t stream) {
  if (num_rows == 0) return cudaSuccess;
  if (num_rows < 0 || n <= 0 || (bias != nullptr && rows != nullptr)) {
    return cudaErrorInvalidValue;
  }
  RmsNormKernel<<<num_rows, kRowThreads, 0, stream>>>(x, rows, n, bias, weight, eps, out,
                                                      out_dtype);
  return cudaGetLastError();
}

cudaError_t LaunchQkvPostprocess(const QkvParams& params, const PagedKv& kv, cudaStream_t stream) {
  if (params.num_tokens == 0) return cudaSuccess;
  if (params.num_tokens < 0 || params.head_dim <= 0 || params.head_dim % 2 != 0 ||
      params.head_dim / 2 > kMaxHalfHeadDim || params.head_dim != kv.head_dim ||
      params.num_kv_heads != kv.num_kv_heads || kv.block_size <= 0) {
    return cudaErrorInvalidValue;
  }
  QkvKernel<<<params.num_tokens, kQkvThreads, 0, stream>>>(params, kv);
  return cudaGetLastError();
}

cudaError_t LaunchSwiGlu(const float* gate_up, int num_tokens, int inter, void* out,
                         DType out_dtype, cudaStream_t stream) {
  if (num_tokens == 0) return cudaSuccess;
  if (num_tokens < 0 || inter <= 0) return cudaErrorInvalidValue;
  const int64_t total = int64_t(num_tokens) * inter;
  const int64_t blocks = (total + kRowThreads - 1) / kRowThreads;
  SwiGluKernel<<<unsigned(blocks), kRowThreads, 0, stream>>>(gate_up, total, inter, out, out_dtype);
  return cudaGetLastError();
}

}  // namespace kvc::backend::cuda
