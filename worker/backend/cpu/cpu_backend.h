// The CPU backend: the transformer forward pass (Llama, Mistral, Qwen2, Qwen3) over a paged KV
// cache, multi-threaded, with AVX2/FMA/F16C kernels reading f32 / bf16 / f16 weights in place.
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
