// The forward-step interface that every worker backend (cpu, cuda, sim) implements, and the
// batch it consumes.
//
// A step is described the way FlashInfer's paged-KV API describes it: a flat list of new tokens
// (ids + positions) for several sequences, no padding, and per sequence its number of new tokens,
// its total context length (cached prefix + new tokens) and its block table, a plain array of
// KV block indices into the backend's pool, stored CSR style (indptr + indices). A sequence in
// decode has one new token; a sequence in prefill has many, possibly continuing after cached
// prefix blocks (chunked prefill, prefix-cache hits). The step writes the new tokens' K/V into
// their slots (position p lives in block block_table[p / block_size], slot p % block_size) and
// returns logits for the last new token of each sequence, or for every new token on request.
// A backend may instead choose the next tokens itself and return only their ids
// (ForwardAndSample): a GPU backend that samples on the device, or the sim backend, whose
// tokens are synthetic.
//
// The KV pool belongs to the backend, sized in blocks when it is created, apart from the weights.
// Which blocks a sequence owns is the engine's business (the block manager is bookkeeping only);
// the backend never allocates or frees blocks.
#ifndef KVCLUSTER_WORKER_BACKEND_BACKEND_H_
#define KVCLUSTER_WORKER_BACKEND_BACKEND_H_

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "worker/model/model.h"

namespace kvc::backend {

// Tokens per KV block unless configured otherwise; matches the block hashing in DESIGN.md.
inline constexpr int kDefaultBlockSize = 16;

struct KvCacheOptions {
  int num_blocks = 0;                  // blocks in the pool, shared by all sequences
  int block_size = kDefaultBlockSize;  // tokens per block
  // bf16 by default: it halves KV memory (twice the tokens fit) and the bytes attention reads
  // per step, and rounding K/V to bf16 costs less accuracy than the bf16 weights already do.
  model::DType dtype = model::DType::kBF16;
};

// One forward step. Plain data; the engine refills it each step.
struct ForwardBatch {
  // Per new token, sequence after sequence (a sequence's tokens are contiguous and in order).
  std::vector<int32_t> token_ids;
  std::vector<int32_t> positions;  // position p of each new token: context_len - num_new + i
  // Per sequence.
  std::vector<int32_t> num_new_tokens;
  std::vector<int32_t> context_lens;  // cached + new tokens
  // Block tables, CSR: sequence s owns block_indices[block_indptr[s] .. block_indptr[s + 1]),
  // which must cover its context_len tokens. block_indptr has num_sequences() + 1 entries.
  std::vector<int32_t> block_indptr{0};
  std::vector<int32_t> block_indices;
  // Logits for every new token (in token order) instead of only the last of each sequence.
  bool all_logits = false;
  // The engine went from the previous step straight to this one (it had work left), so the
  // host time since the previous step belongs to this step. False after the engine waited
  // for work. Timing models (the sim backend) use it; math backends ignore it.
  bool follows_previous_step = false;

  int num_sequences() const { return int(num_new_tokens.size()); }
  int num_tokens() const { return int(token_ids.size()); }

  // Appends a sequence whose `new_tokens` follow `num_cached` tokens already in its blocks.
  void AddSequence(std::span<const int32_t> new_tokens, int num_cached,
                   std::span<const int32_t> block_table) {
    for (size_t i = 0; i < new_tokens.size(); ++i) {
      token_ids.push_back(new_tokens[i]);
      positions.push_back(num_cached + int32_t(i));
    }
    num_new_tokens.push_back(int32_t(new_tokens.size()));
    context_lens.push_back(num_cached + int32_t(new_tokens.size()));
    block_indices.insert(block_indices.end(), block_table.begin(), block_table.end());
    block_indptr.push_back(int32_t(block_indices.size()));
  }
};

// How the next token of one sequence is chosen, for backends that choose it themselves
// (Backend::SamplesTokens): the request's sampling options and the draw's coordinates, with
// the contract of engine::Sampler (worker/engine/sampler.h): the draw for output position i
// depends only on (seed, i), never on batching, so preemption and recompute change nothing.
struct TokenSampling {
  // False for a prefill chunk that stops short of the prompt's end: no token is wanted.
  bool sample = false;
  float temperature = 0.0f;  // 0: greedy
  float top_p = 1.0f;
  int top_k = 0;  // 0: off
  uint64_t seed = 0;
  // Index of the token to produce among the sequence's generated tokens (0 = the first).
  uint64_t output_position = 0;
  // The request wants the chosen token's log-probability.
  bool logprob = false;
};

// What ForwardAndSample returns, one entry per sequence of the batch.
struct SampledTokens {
  std::vector<int32_t> token_ids;  // -1 where TokenSampling::sample was false
  // log-probability of each chosen token under the backend's distribution; empty when the
  // backend cannot give them (then no request gets logprobs).
  std::vector<float> logprobs;
};

// INVALID_ARGUMENT naming the first inconsistency of `batch` against a pool of `kv` blocks and
// a vocabulary of `vocab_size`: lengths, positions, token ids, block indices out of range, a
// block table too short, an empty batch. Every backend checks its batches with it.
absl::Status ValidateForwardBatch(const ForwardBatch& batch, int vocab_size,
                                  const KvCacheOptions& kv);

// INVALID_ARGUMENT naming the first problem of `weights` against their config: a non-positive
// dimension, heads not a multiple of KV heads, an odd head_dim, a missing tensor or one of the
// wrong shape (biases and q/k norms when the config calls for them). Every math backend checks
// its weights with it.
absl::Status ValidateModelWeights(const model::ModelWeights& weights);

// Abstract forward step over a paged KV cache.
// Thread-safety: not thread-safe. One thread (the engine thread) owns a backend and calls it;
// implementations may use their own threads inside a call.
class Backend {
 public:
  virtual ~Backend() = default;

  virtual const model::ModelConfig& config() const = 0;
  virtual const KvCacheOptions& kv_cache_options() const = 0;

  // Runs one step. On success `logits` holds rows x vocab_size floats, row-major: one row per
  // sequence (its last new token), or one per new token when batch.all_logits.
  // INVALID_ARGUMENT when the batch is inconsistent (lengths, positions, token ids, block
  // indices out of range, a block table too short); nothing is written to the cache then.
  virtual absl::Status Forward(const ForwardBatch& batch, std::vector<float>* logits) = 0;

  // True when the backend chooses each sequence's next token itself (on the device, or
  // synthetically), so that only token ids, not vocabulary-sized logits, reach the engine;
  // the engine then calls ForwardAndSample instead of Forward.
  virtual bool SamplesTokens() const { return false; }

  // Runs one step like Forward and chooses the next token of every sequence whose
  // sampling[s].sample is set. `sampling` has one entry per sequence of `batch`. Errors as
  // Forward's, plus INVALID_ARGUMENT when `sampling` does not match the batch.
  // UNIMPLEMENTED unless SamplesTokens().
  virtual absl::Status ForwardAndSample(const ForwardBatch& batch,
                                        std::span<const TokenSampling> sampling,
                                        SampledTokens* out) {
    (void)batch;
    (void)sampling;
    (void)out;
    return absl::UnimplementedError("this backend returns logits; the engine samples");
  }

  // Copies K and V of `layer`, block `block` out as f32, laid out
  // [kv_heads][block_size][head_dim] each. For tests and debugging.
  virtual absl::Status ReadKvBlock(int layer, int block, std::vector<float>* k,
                                   std::vector<float>* v) const = 0;

  // Copies every layer's K/V of block `src` into block `dst` (copy-on-write of a shared
  // partially filled block).
  virtual absl::Status CopyKvBlock(int src, int dst) = 0;
};

}  // namespace kvc::backend

#endif  // KVCLUSTER_WORKER_BACKEND_BACKEND_H_
