// The CPU backend: the transformer forward pass (Llama, Mistral, Qwen2, Qwen3) over a paged KV
// cache, multi-threaded, with AVX2/FMA/F16C kernels reading f32 / bf16 / f16 weights in place.
//
// Design notes:
// - Weights are never expanded: decode reads every weight once per step, so its speed is the
//   bytes of the weights over the memory bandwidth. Products use own kernels (kernels.h): at
//   the time of writing Debian's OpenBLAS offers no bf16 GEMM, and its f32 SGEMM, ~15% faster
//   per core in prefill, would need f32 weights (twice the memory and the decode traffic).
// - A token's logits are bit-identical whatever else is in its batch and however many threads
//   run: decode and prefill, with and without the KV cache, give the same greedy tokens.
// - Activations, norms, softmax and the residual stream are f32; K/V are stored in the KV
//   dtype (bf16 by default) and read through the block table (attention.h).
#ifndef KVCLUSTER_WORKER_BACKEND_CPU_CPU_BACKEND_H_
#define KVCLUSTER_WORKER_BACKEND_CPU_CPU_BACKEND_H_

#include <memory>

#include "absl/status/statusor.h"
#include "worker/backend/backend.h"
#include "worker/model/model.h"

namespace kvc::backend {

struct CpuBackendOptions {
  KvCacheOptions kv_cache;
  int num_threads = 0;  // threads used inside a step; 0 = one per online CPU
  // Threads for the memory-bound products of decode steps (one or two tokens per weight row).
  // On small VMs one core often saturates memory bandwidth, and a second thread then only adds
  // waiting for a worker that another process has descheduled. -1 = measure at creation (read
  // bandwidth with one thread vs all: one unless all are >= 15% faster); 0 = num_threads.
  int memory_bound_threads = -1;
};

// Validates `weights` against their config (shapes, dtypes, missing tensors) and allocates the
// KV pool. The backend keeps a copy of `weights` (and so its storage) alive.
// FAILED_PRECONDITION when the CPU lacks AVX2/FMA/F16C; INVALID_ARGUMENT for bad weights or
// options; RESOURCE_EXHAUSTED when the KV pool cannot be allocated.
absl::StatusOr<std::unique_ptr<Backend>> CreateCpuBackend(const model::ModelWeights& weights,
                                                          const CpuBackendOptions& options);

}  // namespace kvc::backend

#endif  // KVCLUSTER_WORKER_BACKEND_CPU_CPU_BACKEND_H_
