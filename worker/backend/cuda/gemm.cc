#include "worker/backend/cuda/gemm.h"

namespace kvc::backend::cuda {
namespace {

// cuBLAS's recommended workspace on Hopper is 32 MiB.
constexpr size_t kWorkspaceBytes = size_t(32) << 20;

}  // namespace

Gemm::~Gemm() {
  if (handle_ != nullptr) (void)cublasDestroy(handle_);
}

absl::Status Gemm::Init(cudaStream_t stream) {
  KVC_CUBLAS_RETURN_IF_ERROR(cublasCreate(&handle_));
  KVC_CUBLAS_RETURN_IF_ERROR(cublasSetStream(handle_, stream));
  if (absl::Status s = workspace_.Allocate(kWorkspaceBytes); !s.ok()) return s;
  KVC_CUBLAS_RETURN_IF_ERROR(cublasSetWorkspace(handle_, workspace_.data(), workspace_.bytes()));
  return absl::OkStatus();
}

absl::Status Gemm::Linear(const void* x, int m, int k, const void* w, int n, model::DType dtype,
                          float* y, bool accumulate) {
  if (dtype == model::DType::kF32 || m <= 0 || n <= 0 || k <= 0) {
    return absl::InvalidArgumentError("Gemm::Linear: bf16/f16 operands and positive sizes only");
  }
  const cudaDataType_t type = dtype == model::DType::kBF16 ? CUDA_R_16BF : CUDA_R_16F;
  const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  // cuBLAS is column-major. The row-major y [m][n] is the column-major n x m matrix
  // op(A) . B with A = the row-major w [n][k] read as a column-major k x n matrix (lda = k,
  // op = transpose) and B = the row-major x [m][k] read as a column-major k x m matrix.
  KVC_CUBLAS_RETURN_IF_ERROR(cublasGemmEx(handle_, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &alpha, w,
                                          type, k, x, type, k, &beta, y, CUDA_R_32F, n,
                                          CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  return absl::OkStatus();
}

}  // namespace kvc::backend::cuda
