// The engine: one forward step at a time over a batch chosen by the scheduler, with the
// block manager's prefix cache and the backend's math; samples, stops and reports.
//
// Thread-safety: none. The worker runs one engine thread that owns the engine (and so the
// block manager, scheduler and backend) and talks to request handlers through queues; the
// engine itself needs no locks.
#ifndef KVCLUSTER_WORKER_ENGINE_ENGINE_H_
#define KVCLUSTER_WORKER_ENGINE_ENGINE_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "common/block_hash.h"
#include "worker/backend/backend.h"
#include "worker/engine/block_manager.h"
#include "worker/engine/scheduler.h"
#include "worker/engine/sequence.h"

namespace kvc::engine {

struct EngineOptions {
  SchedulerOptions scheduler;
  // Block hashing; block_size must equal the backend's KV block size.
  HashConfig hash;
  // Longest prompt + generation accepted; 0 means the model's max_position_embeddings.
  int max_context_tokens = 0;
  // A random id of this process lifetime, carried by KV events.
  uint64_t epoch = 0;
  // KV events kept for subscribers that resume from a seq.
  size_t replay_events = 1 << 16;
  // Recompute the whole sequence every step instead of reading the KV cache: the outputs
  // are the same, only slower; it exists to measure what the cache buys.
  bool no_kv_cache = false;
};

// What one request produced in one step.
struct RequestOutput {
  SequenceId id = 0;
  std::vector<int32_t> new_tokens;
  std::vector<float> new_logprobs;  // when the request asked for logprobs
  FinishReason finish_reason = FinishReason::kNone;
  int prompt_tokens = 0;
  int cached_prompt_tokens = 0;
  int completion_tokens = 0;
  // When the request first got a step; InfinitePast if it never did.
  absl::Time first_scheduled = absl::InfinitePast();
};

struct EngineLoad {
  int running_requests = 0;
  int waiting_requests = 0;
  int used_blocks = 0;
  int free_blocks = 0;
  int cached_blocks = 0;
  int64_t tokens_in_flight = 0;
};

class Engine {
 public:
  // REQUIRES: backend outlives the engine; options.hash.block_size equals the backend's.
  Engine(backend::Backend* backend, const EngineOptions& options);

  // Queues a request. INVALID_ARGUMENT for an empty prompt, token ids outside the
  // vocabulary, bad sampling values, max_tokens <= 0, or a prompt + max_tokens beyond the
  // context; RESOURCE_EXHAUSTED when the request could never fit in the KV pool;
  // ALREADY_EXISTS for a duplicate id.
  absl::Status Submit(SequenceId id, std::vector<int32_t> prompt, GenerationOptions options,
                      uint64_t seed);

  // Drops a request wherever it is and frees its blocks at once; its final output (reason
  // kCancelled) comes from the next Step. False when the id is unknown.
  bool Cancel(SequenceId id);

  // Runs one step and appends what every request produced. A backend error is returned as
  // is; the requests in that step are finished as cancelled so nothing hangs. Tokens come
  // from the engine's sampler over the backend's logits, or from the backend itself when it
  // samples (Backend::SamplesTokens).
  absl::Status Step(std::vector<RequestOutput>* outputs);

  bool idle() const { return scheduler_.empty() && cancelled_.empty(); }
  int max_context_tokens() const { return max_context_tokens_; }
  EngineLoad Load() const;
  // Sequences preempted (by recompute) so far.
  int64_t num_preemptions() const { return scheduler_.num_preemptions(); }

  const BlockManager& blocks() const { return blocks_; }
  BlockManager& mutable_blocks() { return blocks_; }

 private:
  absl::Status StepOnce(std::vector<RequestOutput>* outputs);
  // Runs the backend on `batch`; fills logits_ or, when the backend samples, sampled_.
  absl::Status RunBackend(const std::vector<ScheduledChunk>& chunks,
                          const backend::ForwardBatch& batch);
  void Emit(Sequence* sequence, FinishReason reason, std::vector<RequestOutput>* outputs,
            RequestOutput* output);
  bool IsStopToken(const Sequence& sequence, int32_t token) const;

  backend::Backend* const backend_;
  const EngineOptions options_;
  const int max_context_tokens_;
  BlockManager blocks_;
  Scheduler scheduler_;
  absl::flat_hash_set<SequenceId> active_ids_;
  std::vector<RequestOutput> cancelled_;
  // The previous Step left work, so the engine went straight on to the next one.
  bool work_left_after_step_ = false;
  std::vector<float> logits_;
  std::vector<float> sampler_scratch_;
  // For backends that choose tokens themselves (Backend::SamplesTokens).
  std::vector<backend::TokenSampling> token_sampling_;
  backend::SampledTokens sampled_;
};

}  // namespace kvc::engine

#endif  // KVCLUSTER_WORKER_ENGINE_ENGINE_H_
