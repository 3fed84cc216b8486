// CUDA runtime and cuBLAS results as absl::Status, and an owning device allocation. Every CUDA
// and cuBLAS call of the backend goes through KVC_CUDA_RETURN_IF_ERROR /
// KVC_CUBLAS_RETURN_IF_ERROR: a failure becomes a status naming the call, never a crash.
// Out of device memory is RESOURCE_EXHAUSTED, no usable device FAILED_PRECONDITION, anything
// else INTERNAL.
#ifndef KVCLUSTER_WORKER_BACKEND_CUDA_CUDA_CHECK_H_
#define KVCLUSTER_WORKER_BACKEND_CUDA_CUDA_CHECK_H_

#include <cublas_api.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <utility>

#include "absl/status/status.h"

namespace kvc::backend::cuda {

absl::Status CudaError(cudaError_t error, const char* call, const char* file, int line);
absl::Status CublasError(cublasStatus_t status, const char* call, const char* file, int line);

#define KVC_CUDA_RETURN_IF_ERROR(call)                                                   \
  do {                                                                                   \
    const cudaError_t kvc_cuda_error = (call);                                           \
    if (kvc_cuda_error != cudaSuccess) {                                                 \
      return ::kvc::backend::cuda::CudaError(kvc_cuda_error, #call, __FILE__, __LINE__); \
    }                                                                                    \
  } while (false)

#define KVC_CUBLAS_RETURN_IF_ERROR(call)                                                      \
  do {                                                                                        \
    const cublasStatus_t kvc_cublas_status = (call);                                          \
    if (kvc_cublas_status != CUBLAS_STATUS_SUCCESS) {                                         \
      return ::kvc::backend::cuda::CublasError(kvc_cublas_status, #call, __FILE__, __LINE__); \
    }                                                                                         \
  } while (false)

// One cudaMalloc'ed region, freed on destruction. Move-only.
// Thread-safety: a value; the owner decides who uses the memory.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    if (this != &other) {
      Reset();
      data_ = std::exchange(other.data_, nullptr);
      bytes_ = std::exchange(other.bytes_, 0);
    }
    return *this;
  }
  ~DeviceBuffer() { Reset(); }

  // Frees what is held, then allocates `bytes` (uninitialised). RESOURCE_EXHAUSTED when the
  // device has not that much free.
  absl::Status Allocate(size_t bytes);
  void Reset();

  void* data() const { return data_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }
  size_t bytes() const { return bytes_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

// Page-locked host memory (cudaMallocHost), which asynchronous copies need to overlap with
// the host. Move-only. Thread-safety: a value, as DeviceBuffer.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  ~PinnedBuffer() { Reset(); }

  absl::Status Allocate(size_t bytes);
  void Reset();

  void* data() const { return data_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }
  size_t bytes() const { return bytes_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace kvc::backend::cuda

#endif  // KVCLUSTER_WORKER_BACKEND_CUDA_CUDA_CHECK_H_
