// Continuous batching: which sequences run in the next forward step, and how many of their
// tokens.
//
// Each step first gives every running sequence its next tokens (one for decode; a chunk of
// the remaining prompt for prefill) under a token budget, oldest first, then admits waiting
// sequences in arrival order while the budget, the sequence limit and the free blocks allow.
// When a running sequence needs a block and none is free, the newest running sequence is
// preempted by recompute: its blocks are released (its full blocks stay cached, so it usually
// resumes from a prefix hit) and it returns to the head of the queue with its generated
// tokens, which it recomputes as prompt; sampling is position-seeded, so its output does not
// change.
//
// Thread-safety: none; owned by the engine thread.
#ifndef KVCLUSTER_WORKER_ENGINE_SCHEDULER_H_
#define KVCLUSTER_WORKER_ENGINE_SCHEDULER_H_

#include <deque>
#include <memory>
#include <vector>

#include "worker/engine/block_manager.h"
#include "worker/engine/sequence.h"

namespace kvc::engine {

struct SchedulerOptions {
  // Sequences in one step.
  int max_num_seqs = 64;
  // New tokens in one step (decode tokens count one each); chunked prefill fills the rest.
  int max_num_batched_tokens = 2048;
  // Reuse cached prefix blocks at admission (off in the engine's no-KV-cache mode).
  bool prefix_caching = true;
};

struct ScheduledChunk {
  Sequence* sequence = nullptr;
  int num_new_tokens = 0;
};

class Scheduler {
 public:
  Scheduler(BlockManager* blocks, const HashConfig& hash_config, const SchedulerOptions& options);

  void Add(std::unique_ptr<Sequence> sequence);

  // Plans the next step. The chunks' sequences stay owned by the scheduler.
  std::vector<ScheduledChunk> Schedule();

  // Removes a finished or cancelled sequence and releases its blocks. Returns it, or null
  // when the id is unknown.
  std::unique_ptr<Sequence> Remove(SequenceId id);

  int num_running() const { return static_cast<int>(running_.size()); }
  int num_waiting() const { return static_cast<int>(waiting_.size()); }
  bool empty() const { return running_.empty() && waiting_.empty(); }
  // Tokens of running sequences (prompt + generated).
  int64_t tokens_in_flight() const;
  int64_t num_preemptions() const { return num_preemptions_; }

 private:
  // Makes room for `sequence` to grow to `num_tokens` by preempting the newest running
  // sequences; false when `sequence` itself had to be preempted.
  bool GrowOrPreempt(Sequence* sequence, int num_tokens);
  void Preempt(Sequence* sequence);
  bool Admit(int* budget, std::vector<ScheduledChunk>* chunks);

  BlockManager* const blocks_;
  const HashConfig hash_config_;
  const SchedulerOptions options_;
  std::vector<std::unique_ptr<Sequence>> running_;  // oldest first
  std::deque<std::unique_ptr<Sequence>> waiting_;
  int64_t num_preemptions_ = 0;
};

}  // namespace kvc::engine

#endif  // KVCLUSTER_WORKER_ENGINE_SCHEDULER_H_
