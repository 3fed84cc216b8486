// One request's state inside the engine: its tokens (prompt then generated), how many of them
// have KV in the cache, the hashes of its full blocks, and its stopping rules.
// Thread-safety: none; owned by the engine thread.
#ifndef KVCLUSTER_WORKER_ENGINE_SEQUENCE_H_
#define KVCLUSTER_WORKER_ENGINE_SEQUENCE_H_

#include <cstdint>
#include <span>
#include <vector>

#include "absl/time/time.h"
#include "common/block_hash.h"
#include "worker/engine/block_manager.h"
#include "worker/engine/sampler.h"

namespace kvc::engine {

enum class FinishReason { kNone, kLength, kStop, kCancelled };

struct GenerationOptions {
  SamplingOptions sampling;
  int max_tokens = 16;
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;
  bool logprobs = false;
  // Salt of the block-hash chain (model identity, LoRA, cache salt): common/block_hash.h.
  uint64_t salt_hash = 0;
};

struct Sequence {
  Sequence(SequenceId id, std::vector<int32_t> prompt, GenerationOptions options, uint64_t seed)
      : id(id),
        tokens(std::move(prompt)),
        prompt_len(static_cast<int>(tokens.size())),
        options(std::move(options)),
        sampler(this->options.sampling, seed) {}

  int num_generated() const { return static_cast<int>(tokens.size()) - prompt_len; }
  // Tokens still without KV: the rest of the prompt, or the last sampled token.
  int num_uncomputed() const { return static_cast<int>(tokens.size()) - num_computed; }

  // Extends block_hashes to cover every full block of `tokens`.
  void HashFullBlocks(const HashConfig& config) {
    const size_t full = tokens.size() / config.block_size;
    while (block_hashes.size() < full) {
      const size_t i = block_hashes.size();
      const std::span<const uint32_t> block(
          reinterpret_cast<const uint32_t*>(tokens.data()) + i * config.block_size,
          config.block_size);
      const uint64_t local = LocalBlockHash(block, config.seed);
      const uint64_t parent = i == 0 ? options.salt_hash : block_hashes[i - 1].seq_hash;
      block_hashes.push_back({ChainBlockHash(parent, local, config.seed), local});
    }
  }

  std::vector<uint64_t> SeqHashes() const {
    std::vector<uint64_t> out;
    out.reserve(block_hashes.size());
    for (const FullBlockHash& h : block_hashes) out.push_back(h.seq_hash);
    return out;
  }

  const SequenceId id;
  std::vector<int32_t> tokens;
  const int prompt_len;
  const GenerationOptions options;
  const Sampler sampler;

  int num_computed = 0;
  // When the scheduler first gave the sequence a step (absl::InfinitePast() before that).
  absl::Time first_scheduled = absl::InfinitePast();
  // Prompt tokens found in the prefix cache at first admission (-1 before it).
  int cached_prompt_tokens = -1;
  int num_preemptions = 0;
  std::vector<FullBlockHash> block_hashes;
  std::vector<float> logprobs;
  FinishReason finish_reason = FinishReason::kNone;
};

}  // namespace kvc::engine

#endif  // KVCLUSTER_WORKER_ENGINE_SEQUENCE_H_
