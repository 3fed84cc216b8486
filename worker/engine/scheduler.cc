#include "worker/engine/scheduler.h"

#include <algorithm>
#include <utility>

#include "common/check.h"

namespace kvc::engine {

Scheduler::Scheduler(BlockManager* blocks, const HashConfig& hash_config,
                     const SchedulerOptions& options)
    : blocks_(blocks), hash_config_(hash_config), options_(options) {
  KVC_CHECK(options.max_num_seqs > 0 && options.max_num_batched_tokens > 0,
            "scheduler limits must be positive");
}

void Scheduler::Add(std::unique_ptr<Sequence> sequence) { waiting_.push_back(std::move(sequence)); }

std::vector<ScheduledChunk> Scheduler::Schedule() {
  std::vector<ScheduledChunk> chunks;
  int budget = options_.max_num_batched_tokens;
  const int64_t preemptions_before = num_preemptions_;
  for (size_t i = 0; i < running_.size() && budget > 0;) {
    Sequence* sequence = running_[i].get();
    const int n = std::min(sequence->num_uncomputed(), budget);
    KVC_CHECK(n > 0, "a running sequence with nothing to compute");
    if (!GrowOrPreempt(sequence, sequence->num_computed + n)) continue;
    chunks.push_back({sequence, n});
    budget -= n;
    ++i;
  }
  // Admitting right after a preemption would only evict the blocks just freed.
  if (num_preemptions_ == preemptions_before) {
    while (budget > 0 && Admit(&budget, &chunks)) {
    }
  }
  return chunks;
}

bool Scheduler::Admit(int* budget, std::vector<ScheduledChunk>* chunks) {
  if (waiting_.empty() || static_cast<int>(running_.size()) >= options_.max_num_seqs) {
    return false;
  }
  Sequence* sequence = waiting_.front().get();
  std::vector<uint64_t> hashes;
  if (options_.prefix_caching) {
    sequence->HashFullBlocks(hash_config_);
    hashes = sequence->SeqHashes();
  }
  const int num_tokens = static_cast<int>(sequence->tokens.size());
  // Keep a few blocks back for the running sequences' decode growth, so that admitting does
  // not immediately force a preemption; an idle engine admits whatever fits.
  const int reserve = running_.empty() ? 0 : std::max(1, blocks_->num_blocks() / 100);
  if (blocks_->BlocksNeeded(hashes, num_tokens) + reserve > blocks_->num_free_blocks()) {
    return false;
  }
  const auto cached_blocks = blocks_->AllocateSequence(sequence->id, hashes, num_tokens);
  KVC_CHECK(cached_blocks.ok(), "allocation failed after BlocksNeeded said it fits");
  sequence->num_computed = *cached_blocks * blocks_->block_size();
  if (sequence->first_scheduled == absl::InfinitePast()) sequence->first_scheduled = absl::Now();
  if (sequence->cached_prompt_tokens < 0) {
    sequence->cached_prompt_tokens = std::min(sequence->num_computed, sequence->prompt_len);
  }
  const int n = std::min(sequence->num_uncomputed(), *budget);
  chunks->push_back({sequence, n});
  *budget -= n;
  running_.push_back(std::move(waiting_.front()));
  waiting_.pop_front();
  return true;
}

bool Scheduler::GrowOrPreempt(Sequence* sequence, int num_tokens) {
  while (!blocks_->GrowSequence(sequence->id, num_tokens).ok()) {
    Sequence* victim = running_.back().get();
    Preempt(victim);
    if (victim == sequence) return false;
  }
  return true;
}

void Scheduler::Preempt(Sequence* sequence) {
  auto it = std::find_if(running_.begin(), running_.end(),
                         [&](const auto& s) { return s.get() == sequence; });
  KVC_CHECK(it != running_.end(), "preempting a sequence that is not running");
  blocks_->FreeSequence(sequence->id);
  sequence->num_computed = 0;
  ++sequence->num_preemptions;
  ++num_preemptions_;
  waiting_.push_front(std::move(*it));
  running_.erase(it);
}

std::unique_ptr<Sequence> Scheduler::Remove(SequenceId id) {
  auto matches = [&](const auto& s) { return s->id == id; };
  if (auto it = std::find_if(running_.begin(), running_.end(), matches); it != running_.end()) {
    std::unique_ptr<Sequence> sequence = std::move(*it);
    running_.erase(it);
    blocks_->FreeSequence(id);
    return sequence;
  }
  if (auto it = std::find_if(waiting_.begin(), waiting_.end(), matches); it != waiting_.end()) {
    std::unique_ptr<Sequence> sequence = std::move(*it);
    waiting_.erase(it);
    return sequence;
  }
  return nullptr;
}

int64_t Scheduler::tokens_in_flight() const {
  int64_t total = 0;
  for (const auto& s : running_) total += static_cast<int64_t>(s->tokens.size());
  return total;
}

}  // namespace kvc::engine
