#include "worker/backend/backend.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

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

}  // namespace

absl::Status ValidateModelWeights(const model::ModelWeights& w) {
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

absl::Status ValidateForwardBatch(const ForwardBatch& b, int vocab_size, const KvCacheOptions& kv) {
  const int seqs = b.num_sequences();
  if (seqs == 0) return absl::InvalidArgumentError("empty batch");
  if (int(b.context_lens.size()) != seqs || int(b.block_indptr.size()) != seqs + 1 ||
      b.block_indptr[0] != 0 || b.block_indptr[seqs] != int(b.block_indices.size())) {
    return absl::InvalidArgumentError("per-sequence arrays disagree in length");
  }
  if (b.positions.size() != b.token_ids.size()) {
    return absl::InvalidArgumentError("token_ids and positions differ in length");
  }
  int64_t token = 0;
  for (int s = 0; s < seqs; ++s) {
    const int n = b.num_new_tokens[s], ctx = b.context_lens[s];
    if (n <= 0 || ctx < n) {
      return absl::InvalidArgumentError(
          absl::StrCat("sequence ", s, ": ", n, " new tokens, context length ", ctx));
    }
    if (token + n > b.num_tokens()) {
      return absl::InvalidArgumentError("num_new_tokens sum past the token list");
    }
    for (int i = 0; i < n; ++i) {
      if (b.positions[token + i] != ctx - n + i) {
        return absl::InvalidArgumentError(absl::StrCat("sequence ", s, ": token ", i,
                                                       " has position ", b.positions[token + i],
                                                       ", expected ", ctx - n + i));
      }
      const int32_t id = b.token_ids[token + i];
      if (id < 0 || id >= vocab_size) {
        return absl::InvalidArgumentError(absl::StrCat("token id ", id, " out of vocabulary"));
      }
    }
    token += n;
    const int begin = b.block_indptr[s], end = b.block_indptr[s + 1];
    const int needed = (ctx + kv.block_size - 1) / kv.block_size;
    if (end < begin || end - begin < needed) {
      return absl::InvalidArgumentError(absl::StrCat("sequence ", s, ": block table has ",
                                                     end - begin, " blocks, needs ", needed));
    }
    for (int i = begin; i < begin + needed; ++i) {
      if (b.block_indices[i] < 0 || b.block_indices[i] >= kv.num_blocks) {
        return absl::InvalidArgumentError(
            absl::StrCat("sequence ", s, ": block index ", b.block_indices[i], " out of range"));
      }
    }
  }
  if (token != b.num_tokens()) {
    return absl::InvalidArgumentError("num_new_tokens do not sum to the token count");
  }
  return absl::OkStatus();
}

}  // namespace kvc::backend
