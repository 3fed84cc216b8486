#include "worker/backend/cuda/device_weights.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "worker/model/dtype_convert.h"

namespace kvc::backend::cuda {
namespace {

using model::DType;
using model::TensorView;

constexpr size_t kAlignment = 256;
constexpr int64_t kConvertChunk = int64_t(1) << 22;  // elements converted per transfer

// One region of the arena: its parts concatenated row-wise, as a matrix in the compute dtype
// or as an f32 vector. Exactly one of the slots receives its device address.
struct Segment {
  std::vector<const TensorView*> parts;
  const void** matrix_slot = nullptr;
  const float** vector_slot = nullptr;
  size_t offset = 0;
  size_t bytes = 0;
};

// Copies `t` to `dst` on the device as `dtype`, converting on the host in chunks when the
// stored dtype differs.
absl::Status CopyTensor(const TensorView& t, DType dtype, uint8_t* dst,
                        std::vector<uint8_t>* staging) {
  if (t.dtype == dtype) {
    KVC_CUDA_RETURN_IF_ERROR(cudaMemcpy(dst, t.data, t.size_bytes(), cudaMemcpyHostToDevice));
    return absl::OkStatus();
  }
  const size_t out_size = model::DTypeSize(dtype);
  staging->resize(size_t(std::min(kConvertChunk, t.numel())) * out_size);
  for (int64_t begin = 0; begin < t.numel(); begin += kConvertChunk) {
    const int64_t end = std::min(t.numel(), begin + kConvertChunk);
    for (int64_t i = begin; i < end; ++i) {
      const float value = model::LoadAsFloat(t.data, t.dtype, i);
      uint8_t* out = staging->data() + size_t(i - begin) * out_size;
      if (dtype == DType::kF32) {
        std::memcpy(out, &value, sizeof(value));
      } else {
        const uint16_t bits =
            dtype == DType::kBF16 ? model::FloatToBF16(value) : model::FloatToF16(value);
        std::memcpy(out, &bits, sizeof(bits));
      }
    }
    KVC_CUDA_RETURN_IF_ERROR(cudaMemcpy(dst + size_t(begin) * out_size, staging->data(),
                                        size_t(end - begin) * out_size, cudaMemcpyHostToDevice));
  }
  return absl::OkStatus();
}

}  // namespace

DType DeviceWeights::ComputeDType(const model::ModelWeights& weights) {
  return weights.layers.front().q_proj.dtype == DType::kF16 ? DType::kF16 : DType::kBF16;
}

absl::Status DeviceWeights::Upload(const model::ModelWeights& w,
                                   const std::function<void(uint64_t, uint64_t)>& progress,
                                   const std::function<void(const std::string&)>& log) {
  dtype_ = ComputeDType(w);
  layers_.assign(w.layers.size(), DeviceLayer{});
  std::vector<Segment> segments;
  const auto matrix = [&](std::vector<const TensorView*> parts, const void** slot) {
    segments.push_back(Segment{.parts = std::move(parts), .matrix_slot = slot});
  };
  const auto vector = [&](const TensorView& t, const float** slot) {
    if (!t.empty()) segments.push_back(Segment{.parts = {&t}, .vector_slot = slot});
  };
  matrix({&w.embed_tokens}, &embed_);
  const bool tied = w.lm_head.data == w.embed_tokens.data;
  if (!tied) matrix({&w.lm_head}, &lm_head_);
  vector(w.norm, &final_norm_);
  for (size_t l = 0; l < w.layers.size(); ++l) {
    const model::LayerWeights& src = w.layers[l];
    DeviceLayer& dst = layers_[l];
    matrix({&src.q_proj, &src.k_proj, &src.v_proj}, &dst.qkv);
    matrix({&src.o_proj}, &dst.o);
    matrix({&src.gate_proj, &src.up_proj}, &dst.gate_up);
    matrix({&src.down_proj}, &dst.down);
    vector(src.input_layernorm, &dst.input_norm);
    vector(src.post_attention_layernorm, &dst.post_norm);
    vector(src.q_bias, &dst.q_bias);
    vector(src.k_bias, &dst.k_bias);
    vector(src.v_bias, &dst.v_bias);
    vector(src.o_bias, &dst.o_bias);
    vector(src.q_norm, &dst.q_norm);
    vector(src.k_norm, &dst.k_norm);
  }

  size_t total = 0, data_bytes = 0;
  bool converted = false;
  for (Segment& s : segments) {
    const DType dtype = s.matrix_slot != nullptr ? dtype_ : DType::kF32;
    for (const TensorView* t : s.parts) {
      s.bytes += size_t(t->numel()) * model::DTypeSize(dtype);
      converted |= s.matrix_slot != nullptr && t->dtype != dtype;
    }
    s.offset = total;
    total += (s.bytes + kAlignment - 1) / kAlignment * kAlignment;
    data_bytes += s.bytes;
  }
  if (converted && log) {
    log(absl::StrCat("converting weights stored as ", model::DTypeName(w.layers[0].q_proj.dtype),
                     " to ", model::DTypeName(dtype_),
                     " on upload (the GPU kernels take bf16 or f16 matrices)"));
  }
  if (absl::Status s = arena_.Allocate(total); !s.ok()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the model's weights need ", total, " bytes of device memory: ", s.message()));
  }

  uint8_t* base = arena_.as<uint8_t>();
  std::vector<uint8_t> staging;
  uint64_t done = 0;
  for (const Segment& s : segments) {
    const DType dtype = s.matrix_slot != nullptr ? dtype_ : DType::kF32;
    uint8_t* dst = base + s.offset;
    for (const TensorView* t : s.parts) {
      if (absl::Status status = CopyTensor(*t, dtype, dst, &staging); !status.ok()) return status;
      dst += size_t(t->numel()) * model::DTypeSize(dtype);
    }
    if (s.matrix_slot != nullptr) *s.matrix_slot = base + s.offset;
    if (s.vector_slot != nullptr) *s.vector_slot = reinterpret_cast<const float*>(base + s.offset);
    done += s.bytes;
    if (progress) progress(done, data_bytes);
  }
  if (tied) lm_head_ = embed_;
  return absl::OkStatus();
}

}  // namespace kvc::backend::cuda
