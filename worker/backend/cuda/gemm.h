// Linear layers through cuBLAS: y[m][n] (f32) = x[m][k] . w[n][k]^T (+ y), with x and w bf16
// or f16 (the same dtype), f32 accumulation. w is a Linear weight as PyTorch stores it
// ([out_features][in_features], row-major). Accumulating into y (beta = 1) is how the backend
// adds the attention and MLP outputs to the f32 residual stream.
#ifndef KVCLUSTER_WORKER_BACKEND_CUDA_GEMM_H_
#define KVCLUSTER_WORKER_BACKEND_CUDA_GEMM_H_

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "absl/status/status.h"
#include "worker/backend/cuda/cuda_check.h"
#include "worker/model/model.h"

namespace kvc::backend::cuda {

// Thread-safety: one thread at a time (a cuBLAS handle bound to one stream).
class Gemm {
 public:
  Gemm() = default;
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;
  ~Gemm();

  // Creates the handle on the current device, bound to `stream`, with its own workspace so
  // that calls can be captured into CUDA graphs without cuBLAS allocating.
  absl::Status Init(cudaStream_t stream);

  // y = x w^T (+ y when accumulate). REQUIRES: dtype is kBF16 or kF16; m, n, k > 0.
  absl::Status Linear(const void* x, int m, int k, const void* w, int n, model::DType dtype,
                      float* y, bool accumulate);

 private:
  cublasHandle_t handle_ = nullptr;
  DeviceBuffer workspace_;
};

}  // namespace kvc::backend::cuda

#endif  // KVCLUSTER_WORKER_BACKEND_CUDA_GEMM_H_
