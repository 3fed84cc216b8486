// Paged attention on the GPU over the CSR page table of backend.h (FlashInfer's layout:
// qo_indptr for the new tokens, kv_indptr / kv_indices for the block tables). Raw device
// pointers only; host-side planning (DecodeSplits, PrefillTokensPerTile) is apart from the
// launches, which never allocate or synchronize and may be captured into a CUDA graph.
//
// Semantics, for each new token at position p of a sequence (p = context_len - num_new + i):
//   out[token][h] = softmax_j(scale * q[token][h] . K[j][h / group]) V[j][h / group]
// over key positions j in [first, p], first = max(0, p - sliding_window + 1) under a sliding
// window, else 0; group = num_heads / num_kv_heads (consecutive query heads share a KV head, as
// Hugging Face's repeat_kv). Scores, softmax and sums are f32; K/V are read in the cache dtype.
// The K/V of every new token must be in the cache before the launch (LaunchQkvPostprocess).
//
// Supported: head_dim in {16, 32, 64, 128} (Llama, Mistral, Qwen2/3), any cache dtype, any group.
#ifndef KVCLUSTER_WORKER_BACKEND_CUDA_PAGED_ATTENTION_H_
#define KVCLUSTER_WORKER_BACKEND_CUDA_PAGED_ATTENTION_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "worker/backend/cuda/kernels.h"
#include "worker/model/model.h"

namespace kvc::backend::cuda {

struct AttentionParams {
  const float* q = nullptr;  // [num_tokens][q_stride] f32; head h at q[token][h * head_dim]
  int q_stride = 0;          // floats between consecutive tokens' rows
  int num_heads = 0;
  float scale = 1.0f;      // usually 1 / sqrt(head_dim)
  int sliding_window = 0;  // 0: full causal attention
  // Batch layout, per sequence s < num_seqs: new tokens are rows qo_indptr[s] ..
  // qo_indptr[s + 1] - 1 of q and out; context_lens[s] counts cached + new tokens; its block
  // table is kv_indices[kv_indptr[s] .. kv_indptr[s + 1]).
  const int32_t* qo_indptr = nullptr;
  const int32_t* context_lens = nullptr;
  const int32_t* kv_indptr = nullptr;
  const int32_t* kv_indices = nullptr;
  void* out = nullptr;  // [num_tokens][out_stride] of out_dtype; head h at out[token][h * head_dim]
  model::DType out_dtype = model::DType::kBF16;
  int out_stride = 0;
};

// True when the kernels handle this head size and cache dtype.
bool PagedAttentionSupports(int head_dim, model::DType kv_dtype);

// --- Decode: one new token per sequence, the KV range split into up to kMaxDecodeSplits parts
// that run in parallel (flash-decoding) and are merged by a second kernel. One thread block
// reads each K/V row once for all the query heads that share it (up to 8 at a time).

inline constexpr int kMaxDecodeSplits = 32;

// How many parts to split each sequence's keys into so that `num_items` sequences fill
// `num_sms` multiprocessors: a function of the batch shape only, so a CUDA graph captured for
// a batch size stays valid for any context length.
int DecodeSplits(int num_items, int num_kv_heads, int num_sms);

// Floats of workspace LaunchPagedDecode needs.
size_t DecodeWorkspaceFloats(int num_items, int num_heads, int head_dim, int splits);

// Attention for `num_items` decode sequences: item i is sequence seq_ids[i] (or i when seq_ids
// is null), whose one new token is row qo_indptr[s + 1] - 1. `workspace` holds
// DecodeWorkspaceFloats(...) floats.
cudaError_t LaunchPagedDecode(const AttentionParams& params, const PagedKv& kv,
                              const int32_t* seq_ids, int num_items, int splits, float* workspace,
                              cudaStream_t stream);

// --- Prefill: any number of new tokens per sequence, causal over the cached prefix and the
// new tokens. The host cuts each sequence's new tokens into tiles of PrefillTokensPerTile
// tokens; one thread block computes a tile for up to 8 query heads of one KV head.

struct PrefillTile {
  int32_t seq = 0;          // sequence index
  int32_t first_token = 0;  // index of the tile's first token among the sequence's new tokens
};

int PrefillTokensPerTile(int num_heads, int num_kv_heads);

cudaError_t LaunchPagedPrefill(const AttentionParams& params, const PagedKv& kv,
                               const PrefillTile* tiles, int num_tiles, cudaStream_t stream);

}  // namespace kvc::backend::cuda

#endif  // KVCLUSTER_WORKER_BACKEND_CUDA_PAGED_ATTENTION_H_
