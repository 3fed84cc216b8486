// The model's weights in device memory, in one allocation: matrices in the compute dtype
// (bf16 or f16; other dtypes converted on upload), q/k/v and gate/up concatenated row-wise so
// that each pair or triple is one GEMM; norm weights and biases as f32. A tied lm_head is the
// embedding table, uploaded once.
#ifndef KVCLUSTER_WORKER_BACKEND_CUDA_DEVICE_WEIGHTS_H_
#define KVCLUSTER_WORKER_BACKEND_CUDA_DEVICE_WEIGHTS_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "worker/backend/cuda/cuda_check.h"
#include "worker/model/model.h"

namespace kvc::backend::cuda {

struct DeviceLayer {
  const void* qkv = nullptr;      // [(heads + 2 kv_heads) * head_dim][hidden]
  const void* o = nullptr;        // [hidden][heads * head_dim]
  const void* gate_up = nullptr;  // [2 intermediate][hidden]: gate rows, then up rows
  const void* down = nullptr;     // [hidden][intermediate]
  const float* input_norm = nullptr;
  const float* post_norm = nullptr;
  const float* q_bias = nullptr;  // null unless attention_bias (then k_bias, v_bias too)
  const float* k_bias = nullptr;
  const float* v_bias = nullptr;
  const float* o_bias = nullptr;  // null unless o_proj_bias
  const float* q_norm = nullptr;  // null unless qk_norm
  const float* k_norm = nullptr;
};

// Thread-safety: immutable after Upload; the device memory is read by the backend's stream.
class DeviceWeights {
 public:
  // The dtype matrices are kept in on the device: the stored one when bf16 or f16, else bf16.
  static model::DType ComputeDType(const model::ModelWeights& weights);

  // Uploads `weights` (validated by the caller) to the current device. `progress` (may be
  // empty) is called with bytes done / total. `log` receives one line per notable choice (f32
  // converted to bf16).
  absl::Status Upload(const model::ModelWeights& weights,
                      const std::function<void(uint64_t, uint64_t)>& progress,
                      const std::function<void(const std::string&)>& log);

  model::DType dtype() const { return dtype_; }
  const void* embed() const { return embed_; }
  const void* lm_head() const { return lm_head_; }
  const float* final_norm() const { return final_norm_; }
  const std::vector<DeviceLayer>& layers() const { return layers_; }
  size_t bytes() const { return arena_.bytes(); }

 private:
  model::DType dtype_ = model::DType::kBF16;
  DeviceBuffer arena_;
  const void* embed_ = nullptr;
  const void* lm_head_ = nullptr;
  const float* final_norm_ = nullptr;
  std::vector<DeviceLayer> layers_;
};

}  // namespace kvc::backend::cuda

#endif  // KVCLUSTER_WORKER_BACKEND_CUDA_DEVICE_WEIGHTS_H_
