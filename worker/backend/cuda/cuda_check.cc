#include "worker/backend/cuda/cuda_check.h"

#include "absl/strings/str_cat.h"

namespace kvc::backend::cuda {

absl::Status CudaError(cudaError_t error, const char* call, const char* file, int line) {
  const std::string message =
      absl::StrCat(call, " failed at ", file, ":", line, ": ", cudaGetErrorName(error), " (",
                   cudaGetErrorString(error), ")");
  switch (error) {
    case cudaErrorMemoryAllocation:
      return absl::ResourceExhaustedError(message);
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorNoKernelImageForDevice:
    case cudaErrorInvalidDevice:
      return absl::FailedPreconditionError(message);
    default:
      return absl::InternalError(message);
  }
}

absl::Status CublasError(cublasStatus_t status, const char* call, const char* file, int line) {
  const std::string message =
      absl::StrCat(call, " failed at ", file, ":", line, ": ", cublasGetStatusString(status));
  if (status == CUBLAS_STATUS_ALLOC_FAILED) return absl::ResourceExhaustedError(message);
  if (status == CUBLAS_STATUS_ARCH_MISMATCH || status == CUBLAS_STATUS_NOT_SUPPORTED) {
    return absl::FailedPreconditionError(message);
  }
  return absl::InternalError(message);
}

absl::Status DeviceBuffer::Allocate(size_t bytes) {
  Reset();
  if (bytes == 0) return absl::OkStatus();
  void* data = nullptr;
  const cudaError_t error = cudaMalloc(&data, bytes);
  if (error != cudaSuccess) {
    (void)cudaGetLastError();  // a failed allocation is not sticky; clear it
    return error == cudaErrorMemoryAllocation
               ? absl::ResourceExhaustedError(
                     absl::StrCat("cannot allocate ", bytes, " bytes of device memory"))
               : CudaError(error, "cudaMalloc", __FILE__, __LINE__);
  }
  data_ = data;
  bytes_ = bytes;
  return absl::OkStatus();
}

void DeviceBuffer::Reset() {
  if (data_ != nullptr) (void)cudaFree(data_);  // only fails on a broken context
  data_ = nullptr;
  bytes_ = 0;
}

absl::Status PinnedBuffer::Allocate(size_t bytes) {
  Reset();
  if (bytes == 0) return absl::OkStatus();
  void* data = nullptr;
  const cudaError_t error = cudaMallocHost(&data, bytes);
  if (error != cudaSuccess) {
    (void)cudaGetLastError();
    return error == cudaErrorMemoryAllocation
               ? absl::ResourceExhaustedError(
                     absl::StrCat("cannot allocate ", bytes, " bytes of page-locked host memory"))
               : CudaError(error, "cudaMallocHost", __FILE__, __LINE__);
  }
  data_ = data;
  bytes_ = bytes;
  return absl::OkStatus();
}

void PinnedBuffer::Reset() {
  if (data_ != nullptr) (void)cudaFreeHost(data_);
  data_ = nullptr;
  bytes_ = 0;
}

}  // namespace kvc::backend::cuda
