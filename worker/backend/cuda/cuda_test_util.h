// Helpers for the CUDA tests: skipping without a GPU, device arrays, host rounding to the
// storage dtypes and the per-dtype tolerances the kernel tests state.
#ifndef KVCLUSTER_WORKER_BACKEND_CUDA_CUDA_TEST_UTIL_H_
#define KVCLUSTER_WORKER_BACKEND_CUDA_CUDA_TEST_UTIL_H_

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "worker/backend/cuda/cuda_backend.h"
#include "worker/model/dtype_convert.h"
#include "worker/model/model.h"

// Skips the test, with the reason, when no usable CUDA device is visible.
#define KVC_REQUIRE_CUDA_DEVICE()                                                         \
  do {                                                                                    \
    if (absl::Status kvc_device = ::kvc::backend::CudaDeviceStatus(); !kvc_device.ok()) { \
      GTEST_SKIP() << "needs a CUDA GPU: " << kvc_device.message();                       \
    }                                                                                     \
  } while (false)

namespace kvc::backend::cuda::testing {

// A device copy of a host vector (or n zeroed elements). Thread-safety: a value.
template <typename T>
class DeviceArray {
 public:
  explicit DeviceArray(size_t n) : size_(n) {
    EXPECT_EQ(cudaMalloc(&data_, std::max<size_t>(n, 1) * sizeof(T)), cudaSuccess);
    EXPECT_EQ(cudaMemset(data_, 0, std::max<size_t>(n, 1) * sizeof(T)), cudaSuccess);
  }
  explicit DeviceArray(const std::vector<T>& host) : DeviceArray(host.size()) {
    EXPECT_EQ(cudaMemcpy(data_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice),
              cudaSuccess);
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  ~DeviceArray() { (void)cudaFree(data_); }

  T* get() const { return static_cast<T*>(data_); }
  size_t size() const { return size_; }
  std::vector<T> ToHost() const {
    std::vector<T> host(size_);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(host.data(), data_, size_ * sizeof(T), cudaMemcpyDeviceToHost),
              cudaSuccess);
    return host;
  }

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
};

// `value` rounded to `dtype` (round to nearest even), as a float.
inline float RoundTo(float value, model::DType dtype) {
  switch (dtype) {
    case model::DType::kF32:
      return value;
    case model::DType::kBF16:
      return model::BF16ToFloat(model::FloatToBF16(value));
    case model::DType::kF16:
      return model::F16ToFloat(model::FloatToF16(value));
  }
  return value;
}

// Raw bytes of `values` stored as `dtype`.
inline std::vector<uint8_t> Encode(const std::vector<float>& values, model::DType dtype) {
  std::vector<uint8_t> out(values.size() * model::DTypeSize(dtype));
  for (size_t i = 0; i < values.size(); ++i) {
    if (dtype == model::DType::kF32) {
      std::memcpy(&out[i * 4], &values[i], 4);
    } else {
      const uint16_t bits = dtype == model::DType::kBF16 ? model::FloatToBF16(values[i])
                                                         : model::FloatToF16(values[i]);
      std::memcpy(&out[i * 2], &bits, 2);
    }
  }
  return out;
}

inline std::vector<float> Decode(const std::vector<uint8_t>& bytes, model::DType dtype) {
  std::vector<float> out(bytes.size() / model::DTypeSize(dtype));
  for (size_t i = 0; i < out.size(); ++i) out[i] = model::LoadAsFloat(bytes.data(), dtype, i);
  return out;
}

// Relative tolerance of a kernel output stored as `dtype` against a double reference: one
// unit in the last place (the kernel's float result may round the other way than the exact
// value), or float accumulation noise for f32.
inline double UlpTolerance(model::DType dtype) {
  switch (dtype) {
    case model::DType::kF32:
      return 1e-5;
    case model::DType::kBF16:
      return 1.0 / 256;  // 8 significant bits
    case model::DType::kF16:
      return 1.0 / 1024;  // 11 significant bits
  }
  return 0;
}

inline std::vector<float> RandomNormal(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> v(n);
  for (float& e : v) e = normal(rng);
  return v;
}

}  // namespace kvc::backend::cuda::testing

#endif  // KVCLUSTER_WORKER_BACKEND_CUDA_CUDA_TEST_UTIL_H_
