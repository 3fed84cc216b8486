// Host-side planning of one forward step of the CUDA backend: which sequences take the decode
// kernel and which the prefill kernel (cut into tiles), which rows get logits, and every array
// the kernels read, packed into one buffer that is copied to the device in one transfer.
//
// The arrays are laid out so that a step's pointers depend only on (tokens, sequences, rows,
// decode sequences, tiles): the block indices, the only array whose length varies between
// decode steps of one batch size, come last. A CUDA graph captured for a batch size therefore
// keeps reading the right addresses at any context length.
//
// Plain functions on plain data; thread-safe.
#ifndef KVCLUSTER_WORKER_BACKEND_CUDA_STEP_PLAN_H_
#define KVCLUSTER_WORKER_BACKEND_CUDA_STEP_PLAN_H_

#include <cstddef>
#include <cstdint>
#include <span>

#include "worker/backend/backend.h"

namespace kvc::backend::cuda {

struct StepPlan {
  int num_tokens = 0;
  int num_seqs = 0;
  int num_rows = 0;         // rows of logits: one per sequence, or one per token (all_logits)
  int num_decode = 0;       // sequences with exactly one new token: the decode kernel
  int num_tiles = 0;        // prefill tiles of the other sequences
  int num_indices = 0;      // block-table entries
  bool all_decode = false;  // every sequence is a decode sequence (a graph-able step)
  bool sample = false;      // the step ends with sampling (params are packed)

  // Byte offsets in the packed buffer. The arrays, in this order:
  //   params       SampleParams[num_seqs] (only when sample)
  //   token_ids    int32[num_tokens]
  //   positions    int32[num_tokens]
  //   token_seq    int32[num_tokens]      the sequence of each token
  //   qo_indptr    int32[num_seqs + 1]    first token of each sequence
  //   context_lens int32[num_seqs]
  //   kv_indptr    int32[num_seqs + 1]
  //   logit_rows   int32[num_rows]        token index of each logits row
  //   decode_seqs  int32[num_decode]
  //   tiles        PrefillTile[num_tiles]
  //   kv_indices   int32[num_indices]
  size_t params = 0, token_ids = 0, positions = 0, token_seq = 0, qo_indptr = 0, context_lens = 0,
         kv_indptr = 0, logit_rows = 0, decode_seqs = 0, tiles = 0, kv_indices = 0, bytes = 0;
};

// Counts and offsets for `batch`. `tokens_per_tile` is PrefillTokensPerTile for the model;
// `sample` makes the rows one per sequence whatever batch.all_logits says.
// REQUIRES: ValidateForwardBatch(batch, ...) is ok.
StepPlan PlanStep(const ForwardBatch& batch, int tokens_per_tile, bool sample);

// An upper bound of PlanStep(batch, ...).bytes over batches of at most `tokens` new tokens,
// `seqs` sequences and `indices` block-table entries.
size_t StepBytesBound(int tokens, int seqs, int indices);

// Writes the arrays of `plan` into dst[0 .. plan.bytes). `sampling` has one entry per sequence
// when plan.sample, else it is empty. dst must be 8-byte aligned.
void PackStep(const ForwardBatch& batch, std::span<const TokenSampling> sampling,
              const StepPlan& plan, int tokens_per_tile, uint8_t* dst);

}  // namespace kvc::backend::cuda

#endif  // KVCLUSTER_WORKER_BACKEND_CUDA_STEP_PLAN_H_
