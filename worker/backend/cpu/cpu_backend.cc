// Compiled without AVX flags: this file decides whether the AVX2 code may run at all.
#include "worker/backend/cpu/cpu_backend.h"

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "worker/backend/cpu/cpu_model.h"
#include "worker/backend/cpu/kernels.h"

namespace kvc::backend {
namespace {

absl::Status CheckTensor(const model::TensorView& t, const std::string& name,
                         std::vector<int64_t> shape) {
  if (t.empty()) return absl::InvalidArgumentError(absl::StrCat("missing tensor ", name));
  if (t.shape != shape) {
    return absl::InvalidArgumentError(absl::StrCat("tensor ", name, " has shape [",
                                                   absl::StrJoin(t.shape, ","), "], expected [",
                                                   absl::StrJoin(shape, ","), "]"));
  }
  return absl::OkStatus();
}

absl::Status CheckWeights(const model::ModelWeights& w) {
  const model::ModelConfig& c = w.config;
  if (c.hidden_size <= 0 || c.num_layers <= 0 || c.num_heads <= 0 || c.num_kv_heads <= 0 ||
      c.head_dim <= 0 || c.intermediate_size <= 0 || c.vocab_size <= 0) {
    return absl::InvalidArgumentError("model config has a non-positive dimension");
  }
  if (c.num_heads % c.num_kv_heads != 0) {
    return absl::InvalidArgumentError("num_heads is not a multiple of num_kv_heads");
  }
  if (c.sliding_window < 0) return absl::InvalidArgumentError("negative sliding_window");
  if (c.head_dim % 2 != 0) return absl::InvalidArgumentError("head_dim must be even for RoPE");
  if (int(w.layers.size()) != c.num_layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("model has ", w.layers.size(), " layers, config says ", c.num_layers));
  }
  const int64_t h = c.hidden_size, q = int64_t(c.num_heads) * c.head_dim,
                kv = int64_t(c.num_kv_heads) * c.head_dim, inter = c.intermediate_size;
  absl::Status s = CheckTensor(w.embed_tokens, "embed_tokens", {c.vocab_size, h});
  if (s.ok()) s = CheckTensor(w.norm, "norm", {h});
  if (s.ok()) s = CheckTensor(w.lm_head, "lm_head", {c.vocab_size, h});
  for (int l = 0; l < c.num_layers && s.ok(); ++l) {
    const model::LayerWeights& L = w.layers[l];
    const std::string p = absl::StrCat("layers.", l, ".");
    s = CheckTensor(L.input_layernorm, p + "input_layernorm", {h});
    if (s.ok()) s = CheckTensor(L.q_proj, p + "q_proj", {q, h});
    if (s.ok()) s = CheckTensor(L.k_proj, p + "k_proj", {kv, h});
    if (s.ok()) s = CheckTensor(L.v_proj, p + "v_proj", {kv, h});
    if (s.ok()) s = CheckTensor(L.o_proj, p + "o_proj", {h, q});
    if (s.ok()) s = CheckTensor(L.post_attention_layernorm, p + "post_attention_layernorm", {h});
    if (s.ok()) s = CheckTensor(L.gate_proj, p + "gate_proj", {inter, h});
    if (s.ok()) s = CheckTensor(L.up_proj, p + "up_proj", {inter, h});
    if (s.ok()) s = CheckTensor(L.down_proj, p + "down_proj", {h, inter});
    if (s.ok() && c.attention_bias) {
      s = CheckTensor(L.q_bias, p + "q_bias", {q});
      if (s.ok()) s = CheckTensor(L.k_bias, p + "k_bias", {kv});
      if (s.ok()) s = CheckTensor(L.v_bias, p + "v_bias", {kv});
    }
    if (s.ok() && c.o_proj_bias) s = CheckTensor(L.o_bias, p + "o_bias", {h});
    if (s.ok() && c.qk_norm) {
      s = CheckTensor(L.q_norm, p + "q_norm", {c.head_dim});
      if (s.ok()) s = CheckTensor(L.k_norm, p + "k_norm", {c.head_dim});
    }
  }
  return s;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Backend>> CreateCpuBackend(const model::ModelWeights& weights,
                                                          const CpuBackendOptions& options) {
  if (!cpu::CpuSupportsKernels()) {
    return absl::FailedPreconditionError(
        "the cpu backend needs a CPU with AVX2, FMA and F16C (x86-64-v3); this one lacks them");
  }
  if (options.kv_cache.num_blocks <= 0 || options.kv_cache.block_size <= 0) {
    return absl::InvalidArgumentError("kv cache needs a positive num_blocks and block_size");
  }
  if (absl::Status s = CheckWeights(weights); !s.ok()) return s;
  return cpu::NewCpuModel(weights, options);
}

}  // namespace kvc::backend
