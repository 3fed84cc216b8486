#include "kvindex/reference_index.h"

#include <map>
#include <set>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace kvc::kvindex {
namespace {

class ReferenceIndex final : public PrefixIndex {
 public:
  explicit ReferenceIndex(const PrefixIndexOptions& options) : options_(options) {}

  absl::Status ApplyStored(WorkerId worker, std::optional<uint64_t> parent_seq_hash,
                           std::span<const StoredBlock> blocks) override {
    if (worker >= options_.max_workers) return absl::InvalidArgumentError("bad worker id");
    absl::MutexLock lock(&mu_);
    return Store(workers_[worker], parent_seq_hash, blocks);
  }

  absl::Status ApplyRemoved(WorkerId worker, std::span<const uint64_t> seq_hashes) override {
    if (worker >= options_.max_workers) return absl::InvalidArgumentError("bad worker id");
    absl::MutexLock lock(&mu_);
    Worker& state = workers_[worker];
    for (uint64_t seq_hash : seq_hashes) {
      if (state.held.erase(seq_hash) == 0) {
        ++state.summary.unknown_removals;
        continue;
      }
      state.summary.blocks.Remove(seq_hash);
      ForgetRecency(state, seq_hash);
    }
    return absl::OkStatus();
  }

  absl::Status ApplyCleared(WorkerId worker) override {
    if (worker >= options_.max_workers) return absl::InvalidArgumentError("bad worker id");
    absl::MutexLock lock(&mu_);
    Clear(workers_[worker]);
    return absl::OkStatus();
  }

  absl::Status RemoveWorker(WorkerId worker) override {
    if (worker >= options_.max_workers) return absl::InvalidArgumentError("bad worker id");
    absl::MutexLock lock(&mu_);
    workers_.erase(worker);
    return absl::OkStatus();
  }

  absl::Status ReplaceWorker(WorkerId worker, std::span<const StoredRun> snapshot) override {
    if (worker >= options_.max_workers) return absl::InvalidArgumentError("bad worker id");
    absl::MutexLock lock(&mu_);
    Worker& state = workers_[worker];
    Clear(state);
    absl::Status first_failure;
    for (const StoredRun& run : snapshot) {
      absl::Status status = Store(state, run.parent_seq_hash, run.blocks);
      if (first_failure.ok()) first_failure = std::move(status);
    }
    return first_failure;
  }

  void FindMatches(std::span<const uint64_t> seq_hashes,
                   std::vector<WorkerMatch>* matches) const override {
    absl::MutexLock lock(&mu_);
    matches->clear();
    for (const auto& [worker, state] : workers_) {
      uint32_t matched = 0;
      while (matched < seq_hashes.size() && state.held.contains(seq_hashes[matched])) ++matched;
      if (matched > 0) matches->push_back({worker, matched});
    }
  }

  WorkerSummary GetWorkerSummary(WorkerId worker) const override {
    absl::MutexLock lock(&mu_);
    auto it = workers_.find(worker);
    return it == workers_.end() ? WorkerSummary{} : it->second.summary;
  }

  IndexStats GetStats() const override {
    absl::MutexLock lock(&mu_);
    IndexStats stats;
    std::set<uint64_t> all;
    for (const auto& [worker, state] : workers_) {
      all.insert(state.held.begin(), state.held.end());
      stats.block_worker_pairs += state.held.size();
    }
    stats.blocks = all.size();
    return stats;
  }

  absl::Status CheckConsistency() const override { return absl::OkStatus(); }

 private:
  struct Worker {
    std::set<uint64_t> held;
    WorkerSummary summary;
    // Approximate mode: recency tick per held block, and the blocks ordered by tick.
    std::map<uint64_t, uint64_t> tick_of;
    std::set<std::pair<uint64_t, uint64_t>> by_tick;
  };

  absl::Status Store(Worker& state, std::optional<uint64_t> parent,
                     std::span<const StoredBlock> blocks) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (blocks.empty()) return absl::OkStatus();
    if (parent.has_value() && !state.held.contains(*parent)) {
      ++state.summary.orphan_stores;
      return absl::FailedPreconditionError(absl::StrCat("parent ", *parent, " not held"));
    }
    const bool approximate = options_.max_blocks_per_worker > 0;
    for (const StoredBlock& block : blocks) {
      if (state.held.insert(block.seq_hash).second) {
        state.summary.blocks.Add(block.seq_hash);
      } else if (!approximate) {
        ++state.summary.duplicate_stores;
      }
    }
    if (!approximate) return absl::OkStatus();
    for (size_t i = blocks.size(); i-- > 0;) {
      ForgetRecency(state, blocks[i].seq_hash);
      state.tick_of[blocks[i].seq_hash] = ++clock_;
      state.by_tick.insert({clock_, blocks[i].seq_hash});
    }
    while (state.held.size() > options_.max_blocks_per_worker) {
      const uint64_t victim = state.by_tick.begin()->second;
      ForgetRecency(state, victim);
      state.held.erase(victim);
      state.summary.blocks.Remove(victim);
      ++state.summary.pruned_blocks;
    }
    return absl::OkStatus();
  }

  static void ForgetRecency(Worker& state, uint64_t seq_hash) {
    auto it = state.tick_of.find(seq_hash);
    if (it == state.tick_of.end()) return;
    state.by_tick.erase({it->second, seq_hash});
    state.tick_of.erase(it);
  }

  static void Clear(Worker& state) {
    state.held.clear();
    state.tick_of.clear();
    state.by_tick.clear();
    state.summary.blocks.Clear();
  }

  const PrefixIndexOptions options_;
  mutable absl::Mutex mu_;
  std::map<WorkerId, Worker> workers_ ABSL_GUARDED_BY(mu_);
  uint64_t clock_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace

std::unique_ptr<PrefixIndex> NewReferenceIndex(const PrefixIndexOptions& options) {
  return std::make_unique<ReferenceIndex>(options);
}

}  // namespace kvc::kvindex
