#include "worker/backend/cuda/step_plan.h"

#include <cstring>

#include "worker/backend/cuda/paged_attention.h"
#include "worker/backend/cuda/sampling.h"

namespace kvc::backend::cuda {
namespace {

size_t AlignUp(size_t n, size_t alignment) { return (n + alignment - 1) / alignment * alignment; }

template <typename T>
T* At(uint8_t* base, size_t offset) {
  return reinterpret_cast<T*>(base + offset);
}

}  // namespace

StepPlan PlanStep(const ForwardBatch& batch, int tokens_per_tile, bool sample) {
  StepPlan plan;
  plan.num_tokens = batch.num_tokens();
  plan.num_seqs = batch.num_sequences();
  plan.num_rows = sample || !batch.all_logits ? plan.num_seqs : plan.num_tokens;
  plan.num_indices = int(batch.block_indices.size());
  plan.sample = sample;
  for (int n : batch.num_new_tokens) {
    if (n == 1) {
      ++plan.num_decode;
    } else {
      plan.num_tiles += (n + tokens_per_tile - 1) / tokens_per_tile;
    }
  }
  plan.all_decode = plan.num_decode == plan.num_seqs;

  size_t offset = 0;
  const auto take = [&](size_t bytes, size_t alignment) {
    offset = AlignUp(offset, alignment);
    const size_t at = offset;
    offset += bytes;
    return at;
  };
  const size_t i32 = sizeof(int32_t);
  plan.params = take(sample ? plan.num_seqs * sizeof(SampleParams) : 0, alignof(SampleParams));
  plan.token_ids = take(plan.num_tokens * i32, i32);
  plan.positions = take(plan.num_tokens * i32, i32);
  plan.token_seq = take(plan.num_tokens * i32, i32);
  plan.qo_indptr = take((plan.num_seqs + 1) * i32, i32);
  plan.context_lens = take(plan.num_seqs * i32, i32);
  plan.kv_indptr = take((plan.num_seqs + 1) * i32, i32);
  plan.logit_rows = take(plan.num_rows * i32, i32);
  plan.decode_seqs = take(plan.num_decode * i32, i32);
  plan.tiles = take(plan.num_tiles * sizeof(PrefillTile), alignof(PrefillTile));
  plan.kv_indices = take(plan.num_indices * i32, i32);
  plan.bytes = AlignUp(offset, 8);
  return plan;
}

size_t StepBytesBound(int tokens, int seqs, int indices) {
  const size_t i32 = sizeof(int32_t);
  const size_t rows = size_t(tokens > seqs ? tokens : seqs);
  return size_t(seqs) * sizeof(SampleParams) + 3 * size_t(tokens) * i32  // params, per token
         + (3 * size_t(seqs) + 2) * i32                                  // per sequence
         + rows * i32 + size_t(seqs) * i32                               // rows, decode list
         + size_t(tokens) * sizeof(PrefillTile) + size_t(indices) * i32  // tiles, tables
         + 11 * 8;                                                       // alignment
}

void PackStep(const ForwardBatch& batch, std::span<const TokenSampling> sampling,
              const StepPlan& plan, int tokens_per_tile, uint8_t* dst) {
  if (plan.sample) {
    SampleParams* params = At<SampleParams>(dst, plan.params);
    for (int s = 0; s < plan.num_seqs; ++s) {
      const TokenSampling& t = sampling[s];
      params[s] = SampleParams{.seed = t.seed,
                               .position = t.output_position,
                               .temperature = t.temperature,
                               .top_p = t.top_p,
                               .top_k = t.top_k,
                               .sample = t.sample ? 1 : 0};
    }
  }
  const size_t token_bytes = size_t(plan.num_tokens) * sizeof(int32_t);
  std::memcpy(dst + plan.token_ids, batch.token_ids.data(), token_bytes);
  std::memcpy(dst + plan.positions, batch.positions.data(), token_bytes);
  std::memcpy(dst + plan.context_lens, batch.context_lens.data(),
              size_t(plan.num_seqs) * sizeof(int32_t));
  std::memcpy(dst + plan.kv_indptr, batch.block_indptr.data(),
              size_t(plan.num_seqs + 1) * sizeof(int32_t));
  std::memcpy(dst + plan.kv_indices, batch.block_indices.data(),
              size_t(plan.num_indices) * sizeof(int32_t));

  int32_t* token_seq = At<int32_t>(dst, plan.token_seq);
  int32_t* qo_indptr = At<int32_t>(dst, plan.qo_indptr);
  int32_t* logit_rows = At<int32_t>(dst, plan.logit_rows);
  int32_t* decode_seqs = At<int32_t>(dst, plan.decode_seqs);
  PrefillTile* tiles = At<PrefillTile>(dst, plan.tiles);
  const bool one_row_per_sequence = plan.num_rows == plan.num_seqs;
  int token = 0, decode = 0, tile = 0;
  for (int s = 0; s < plan.num_seqs; ++s) {
    const int n = batch.num_new_tokens[s];
    qo_indptr[s] = token;
    for (int i = 0; i < n; ++i) {
      token_seq[token + i] = s;
      if (!one_row_per_sequence) logit_rows[token + i] = token + i;
    }
    if (one_row_per_sequence) logit_rows[s] = token + n - 1;
    if (n == 1) {
      decode_seqs[decode++] = s;
    } else {
      for (int first = 0; first < n; first += tokens_per_tile) {
        tiles[tile++] = PrefillTile{.seq = s, .first_token = first};
      }
    }
    token += n;
  }
  qo_indptr[plan.num_seqs] = token;
}

}  // namespace kvc::backend::cuda
