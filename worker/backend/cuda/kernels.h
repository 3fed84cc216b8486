// The CUDA backend's element-wise kernels: embedding gather, RoPE angles, RMSNorm (with the
// bias add that precedes it), the per-token q/k/v step (bias, q/k RMSNorm, RoPE, KV write into
// paged blocks) and SwiGLU. The attention kernels are in paged_attention.h, sampling in
// sampling.h.
//
// Every launcher takes raw device pointers and a stream, enqueues its kernels and returns
// cudaGetLastError() (cudaErrorInvalidValue for arguments outside what the kernel supports); it
// never allocates or synchronizes, so it may be captured into a CUDA graph. Activations between
// kernels are f32 unless an `out_dtype` says otherwise; weights of norms and biases are f32.
// The arithmetic follows the CPU backend (worker/backend/cpu) step by step.
#ifndef KVCLUSTER_WORKER_BACKEND_CUDA_KERNELS_H_
#define KVCLUSTER_WORKER_BACKEND_CUDA_KERNELS_H_

#include <cuda_runtime_api.h>

#include <cstdint>

#include "worker/model/model.h"

namespace kvc::backend::cuda {

// One layer's paged KV cache on the device, laid out as the CPU backend's: K and V each
// [num_blocks][num_kv_heads][block_size][head_dim] of `dtype`. Position p of a sequence lives
// in block table[p / block_size], slot p % block_size.
struct PagedKv {
  void* k = nullptr;
  void* v = nullptr;
  model::DType dtype = model::DType::kBF16;
  int block_size = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
};

// cudaSuccess when this build holds GPU code that the current device can run; otherwise the
// error a launch would give (cudaErrorNoKernelImageForDevice when built for other
// architectures).
cudaError_t CheckKernelImage();

// x[t][i] = float(embed[token_ids[t]][i]): `embed` is [vocab][hidden] of `dtype`, x is f32.
cudaError_t LaunchEmbedding(const int32_t* token_ids, int num_tokens, const void* embed,
                            model::DType dtype, int hidden, float* x, cudaStream_t stream);

// cos[t][i] = float(cos(double(positions[t]) * inv_freq[i])), sin likewise, for i < half: the
// CPU backend's RopeAngles, computed in double and rounded once.
cudaError_t LaunchRopeTable(const int32_t* positions, int num_tokens, const double* inv_freq,
                            int half, float* cos, float* sin, cudaStream_t stream);

// For each output row r < num_rows, source row src = rows ? rows[r] : r of x ([*][n], f32):
// when `bias` is set, x[src] += bias first (in place; REQUIRES rows == nullptr then); then
// out[r] = x[src] / sqrt(mean(x[src]^2) + eps) * weight, stored as `out_dtype`.
cudaError_t LaunchRmsNorm(float* x, const int32_t* rows, int num_rows, int n, const float* bias,
                          const float* weight, float eps, void* out, model::DType out_dtype,
                          cudaStream_t stream);

// The step between the q/k/v projection and attention, for every new token.
struct QkvParams {
  // [num_tokens][(num_heads + 2 * num_kv_heads) * head_dim]: each token's q, k and v heads,
  // as the projection wrote them. q is rewritten in place (bias, norm, RoPE); attention reads
  // it from here with row stride (num_heads + 2 * num_kv_heads) * head_dim.
  float* qkv = nullptr;
  int num_tokens = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;               // even, at most 256
  const float* q_bias = nullptr;  // [num_heads * head_dim], or null (then k_bias, v_bias too)
  const float* k_bias = nullptr;
  const float* v_bias = nullptr;
  const float* q_norm = nullptr;  // [head_dim] RMSNorm weight per head (Qwen3), or null
  const float* k_norm = nullptr;
  float eps = 1e-6f;
  const float* rope_cos = nullptr;  // [num_tokens][head_dim / 2], from LaunchRopeTable
  const float* rope_sin = nullptr;
  const int32_t* positions = nullptr;  // [num_tokens]
  const int32_t* token_seq = nullptr;  // [num_tokens]: the sequence of each token
  const int32_t* kv_indptr = nullptr;  // CSR block tables, as in backend.h
  const int32_t* kv_indices = nullptr;
};

// Adds the biases, applies the per-head RMSNorm to q and k, rotates q and k (RoPE, rotate-half
// form), keeps q in place and writes k and v into the token's slot of `kv`.
cudaError_t LaunchQkvPostprocess(const QkvParams& params, const PagedKv& kv, cudaStream_t stream);

// out[t][i] = silu(gate_up[t][i]) * gate_up[t][inter + i] for i < inter, as `out_dtype`.
// gate_up is [num_tokens][2 * inter] f32 (the fused gate and up projections).
cudaError_t LaunchSwiGlu(const float* gate_up, int num_tokens, int inter, void* out,
                         model::DType out_dtype, cudaStream_t stream);

}  // namespace kvc::backend::cuda

#endif  // KVCLUSTER_WORKER_BACKEND_CUDA_KERNELS_H_
