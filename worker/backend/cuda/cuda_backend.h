// The CUDA backend: the transformer forward pass (Llama, Mistral, Qwen2, Qwen3) on one NVIDIA
// GPU over a paged KV cache in device memory, with sampling on the device.
//
// Design notes:
// - Weights are uploaded once, in their stored dtype when it is bf16 or f16; f32 models are
//   converted to bf16 on upload (logged). q/k/v and gate/up projections are concatenated so
//   that each is one GEMM. GEMMs run in cuBLAS (bf16/f16 in, f32 accumulate, f32 out); the
//   residual stream, norms, RoPE and softmax are f32, as in the CPU backend; activations that
//   feed a GEMM are rounded to the weights' dtype.
// - Own kernels (kernels.h, paged_attention.h, sampling.h) take raw device pointers and the
//   CSR page table of backend.h; they are tested one by one against CPU references.
// - The KV pool is one cudaMalloc, [layer][K|V][block][kv_head][slot][head_dim] like the CPU
//   backend's, sized in blocks from KvCacheOptions::num_blocks or from the device memory left
//   after the weights and scratch buffers.
// - Decode steps (one new token per sequence) are captured into CUDA graphs, one per batch
//   size, on first use, and replayed afterwards; any other step runs eagerly. Graph and eager
//   runs execute the same kernels with the same launch shapes, so their results are identical.
// - Every CUDA and cuBLAS call is checked; failures come back as statuses.
#ifndef KVCLUSTER_WORKER_BACKEND_CUDA_CUDA_BACKEND_H_
#define KVCLUSTER_WORKER_BACKEND_CUDA_CUDA_BACKEND_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/backend/backend.h"
#include "worker/model/model.h"

namespace kvc::backend {

struct CudaBackendOptions {
  // The pool's block size and dtype; num_blocks > 0 fixes its size, 0 sizes it from memory.
  KvCacheOptions kv_cache;
  // When kv_cache.num_blocks == 0: the pool's bytes, or when 0 too, this share of the device
  // memory that is free once the weights and scratch buffers are allocated.
  uint64_t kv_cache_bytes = 0;
  double kv_cache_fraction = 0.9;
  int device = 0;  // CUDA device ordinal
  // Scratch buffers are sized for steps of up to this many new tokens and sequences before
  // the pool takes its memory; larger steps grow them (and may then fail for lack of memory).
  int max_batch_tokens = 2048;
  int max_batch_sequences = 256;
  // Capture decode steps of up to this many sequences into CUDA graphs (0: never).
  int max_graph_batch = 256;
  // Upload progress (bytes done, bytes total), called now and then while weights upload.
  std::function<void(uint64_t, uint64_t)> progress;
  // One line per notable event (weights converted, KV pool size, a step that could not be
  // captured into a graph). Empty: written to stderr.
  std::function<void(const std::string&)> log;
};

// OK when device `device` exists and this build has kernels for it; otherwise
// FAILED_PRECONDITION saying what is missing (no driver, no device, wrong architecture).
absl::Status CudaDeviceStatus(int device = 0);

// "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs, 79.1 GiB)", or the reason there is none.
std::string CudaDeviceDescription(int device = 0);

// Validates `weights` (shapes, head size) and `options`, uploads the weights, allocates the KV
// pool. The weights need not outlive the backend. FAILED_PRECONDITION without a usable device;
// INVALID_ARGUMENT for bad weights or options; UNIMPLEMENTED for a head size the kernels do not
// support; RESOURCE_EXHAUSTED when device memory runs out.
absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(const model::ModelWeights& weights,
                                                           const CudaBackendOptions& options);

}  // namespace kvc::backend

#endif  // KVCLUSTER_WORKER_BACKEND_CUDA_CUDA_BACKEND_H_
