// Internal to the CPU backend: the forward pass itself, compiled with AVX2/FMA/F16C. Reach it
// through CreateCpuBackend(), which checks the CPU and the weights first.
#ifndef KVCLUSTER_WORKER_BACKEND_CPU_CPU_MODEL_H_
#define KVCLUSTER_WORKER_BACKEND_CPU_CPU_MODEL_H_

#include <memory>

#include "absl/status/statusor.h"
#include "worker/backend/backend.h"
#include "worker/backend/cpu/cpu_backend.h"

namespace kvc::backend::cpu {

// REQUIRES: CpuSupportsKernels() and weights validated against their config.
absl::StatusOr<std::unique_ptr<Backend>> NewCpuModel(const model::ModelWeights& weights,
                                                     const CpuBackendOptions& options);

}  // namespace kvc::backend::cpu

#endif  // KVCLUSTER_WORKER_BACKEND_CPU_CPU_MODEL_H_
