// Internal to the CUDA backend: the Backend implementation. Reach it through
// CreateCudaBackend(), which checks the device, the weights and the options first.
#ifndef KVCLUSTER_WORKER_BACKEND_CUDA_CUDA_MODEL_H_
#define KVCLUSTER_WORKER_BACKEND_CUDA_CUDA_MODEL_H_

#include <memory>

#include "absl/status/statusor.h"
#include "worker/backend/backend.h"
#include "worker/backend/cuda/cuda_backend.h"

namespace kvc::backend::cuda {

// REQUIRES: CudaDeviceStatus(options.device).ok(), ValidateModelWeights(weights).ok(), and the
// options and head size checked by CreateCudaBackend.
absl::StatusOr<std::unique_ptr<Backend>> NewCudaModel(const model::ModelWeights& weights,
                                                      const CudaBackendOptions& options);

}  // namespace kvc::backend::cuda

#endif  // KVCLUSTER_WORKER_BACKEND_CUDA_CUDA_MODEL_H_
