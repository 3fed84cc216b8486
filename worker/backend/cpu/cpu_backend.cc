// Compiled without AVX flags: this file decides whether the AVX2 code may run at all.
#include "worker/backend/cpu/cpu_backend.h"

#include "absl/status/status.h"
#include "worker/backend/cpu/cpu_model.h"
#include "worker/backend/cpu/kernels.h"

namespace kvc::backend {

absl::StatusOr<std::unique_ptr<Backend>> CreateCpuBackend(const model::ModelWeights& weights,
                                                          const CpuBackendOptions& options) {
  if (!cpu::CpuSupportsKernels()) {
    return absl::FailedPreconditionError(
        "the cpu backend needs a CPU with AVX2, FMA and F16C (x86-64-v3); this one lacks them");
  }
  if (options.kv_cache.num_blocks <= 0 || options.kv_cache.block_size <= 0) {
    return absl::InvalidArgumentError("kv cache needs a positive num_blocks and block_size");
  }
  if (absl::Status s = ValidateModelWeights(weights); !s.ok()) return s;
  return cpu::NewCpuModel(weights, options);
}

}  // namespace kvc::backend
