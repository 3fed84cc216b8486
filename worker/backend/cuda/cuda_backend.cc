#include "worker/backend/cuda/cuda_backend.h"

#include <cuda_runtime_api.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "worker/backend/cuda/cuda_check.h"
#include "worker/backend/cuda/cuda_model.h"
#include "worker/backend/cuda/kernels.h"
#include "worker/backend/cuda/paged_attention.h"

#ifndef KVC_CUDA_ARCHITECTURES
#define KVC_CUDA_ARCHITECTURES "unknown"
#endif

namespace kvc::backend {

absl::Status CudaDeviceStatus(int device) {
  int count = 0;
  const cudaError_t error = cudaGetDeviceCount(&count);
  if (error != cudaSuccess) {
    (void)cudaGetLastError();
    return absl::FailedPreconditionError(absl::StrCat(
        "no usable CUDA device: ", cudaGetErrorName(error), " (", cudaGetErrorString(error), ")"));
  }
  if (count == 0) return absl::FailedPreconditionError("no CUDA device is visible");
  if (device < 0 || device >= count) {
    return absl::FailedPreconditionError(
        absl::StrCat("CUDA device ", device, " does not exist (", count, " visible)"));
  }
  KVC_CUDA_RETURN_IF_ERROR(cudaSetDevice(device));
  cudaDeviceProp properties;
  KVC_CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&properties, device));
  if (const cudaError_t image = cuda::CheckKernelImage(); image != cudaSuccess) {
    (void)cudaGetLastError();
    return absl::FailedPreconditionError(absl::StrCat(
        "this build holds GPU code for CUDA architectures ", KVC_CUDA_ARCHITECTURES,
        " only, and device ", device, " (", properties.name, ") is sm_", properties.major,
        properties.minor, " (", cudaGetErrorString(image),
        "); rebuild with -DCMAKE_CUDA_ARCHITECTURES=", properties.major, properties.minor));
  }
  return absl::OkStatus();
}

std::string CudaDeviceDescription(int device) {
  if (absl::Status s = CudaDeviceStatus(device); !s.ok()) return std::string(s.message());
  cudaDeviceProp p;
  if (cudaGetDeviceProperties(&p, device) != cudaSuccess) return "unknown CUDA device";
  return absl::StrFormat("%s (sm_%d%d, %d SMs, %.1f GiB)", p.name, p.major, p.minor,
                         p.multiProcessorCount, double(p.totalGlobalMem) / double(1 << 30));
}

absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(const model::ModelWeights& weights,
                                                           const CudaBackendOptions& options) {
  if (absl::Status s = CudaDeviceStatus(options.device); !s.ok()) return s;
  if (absl::Status s = ValidateModelWeights(weights); !s.ok()) return s;
  const model::ModelConfig& c = weights.config;
  if (!cuda::PagedAttentionSupports(c.head_dim, options.kv_cache.dtype)) {
    return absl::UnimplementedError(absl::StrCat(
        "the cuda backend's attention kernels take head_dim 16, 32, 64 or 128; the model has ",
        c.head_dim));
  }
  if (options.kv_cache.block_size <= 0 || options.kv_cache.num_blocks < 0) {
    return absl::InvalidArgumentError("kv cache needs a positive block_size, num_blocks >= 0");
  }
  if (options.kv_cache.num_blocks == 0 && options.kv_cache_bytes == 0 &&
      !(options.kv_cache_fraction > 0 && options.kv_cache_fraction <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("kv_cache_fraction must be in (0, 1], got ", options.kv_cache_fraction));
  }
  if (options.max_batch_tokens <= 0 || options.max_batch_sequences <= 0 ||
      options.max_graph_batch < 0) {
    return absl::InvalidArgumentError(
        "max_batch_tokens and max_batch_sequences must be positive, max_graph_batch >= 0");
  }
  return cuda::NewCudaModel(weights, options);
}

}  // namespace kvc::backend
