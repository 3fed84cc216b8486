#include "kvindex/prefix_index.h"

#include <algorithm>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/check.h"
#include "kvindex/radix_tree.h"
#include "kvindex/worker_lru.h"

namespace kvc::kvindex {
namespace {

using internal::RadixTree;
using internal::WorkerLru;

// The concurrency design is explained in prefix_index.h: mu_ is a reader-writer lock taken
// exclusively for bounded sections only; writer_mu_ serializes mutators for their whole
// duration, so a bulk operation sees no other mutation between its sections. The tree's
// location map is read by the writer alone (lookups never use it), so it is grown under
// writer_mu_ only, before the exclusive section that inserts into it: its rehashes, tens of
// milliseconds at millions of blocks, never hold up a lookup. GetStats and CheckConsistency
// read it, so they take writer_mu_ too.
class RadixPrefixIndex final : public PrefixIndex {
 public:
  explicit RadixPrefixIndex(const PrefixIndexOptions& options) : options_(options) {
    KVC_CHECK(options_.max_blocks_per_write_section > 0, "write sections must hold a block");
  }

  absl::Status ApplyStored(WorkerId worker, std::optional<uint64_t> parent_seq_hash,
                           std::span<const StoredBlock> blocks) override {
    if (absl::Status status = CheckWorkerId(worker); !status.ok()) return status;
    absl::MutexLock writer(&writer_mu_);
    return StoreLocked(worker, parent_seq_hash, blocks);
  }

  absl::Status ApplyRemoved(WorkerId worker, std::span<const uint64_t> seq_hashes) override {
    if (absl::Status status = CheckWorkerId(worker); !status.ok()) return status;
    absl::MutexLock writer(&writer_mu_);
    const size_t section = options_.max_blocks_per_write_section;
    size_t done = 0;
    do {
      absl::WriterMutexLock lock(&mu_);
      WorkerState& state = EnsureWorker(worker);
      const auto chunk = seq_hashes.subspan(done, std::min(section, seq_hashes.size() - done));
      state.summary.unknown_removals += tree_.Remove(worker, chunk, &state.summary.blocks);
      if (state.lru) {
        for (uint64_t seq_hash : chunk) state.lru->Erase(seq_hash);
      }
      done += chunk.size();
    } while (done < seq_hashes.size());
    return absl::OkStatus();
  }

  absl::Status ApplyCleared(WorkerId worker) override {
    if (absl::Status status = CheckWorkerId(worker); !status.ok()) return status;
    absl::MutexLock writer(&writer_mu_);
    DropAllBlocks(worker);
    SetHidden(worker, false);
    return absl::OkStatus();
  }

  absl::Status RemoveWorker(WorkerId worker) override {
    if (absl::Status status = CheckWorkerId(worker); !status.ok()) return status;
    absl::MutexLock writer(&writer_mu_);
    DropAllBlocks(worker);
    absl::WriterMutexLock lock(&mu_);
    workers_[worker] = WorkerState{};
    hidden_[worker] = 0;
    return absl::OkStatus();
  }

  absl::Status ReplaceWorker(WorkerId worker, std::span<const StoredRun> snapshot) override {
    if (absl::Status status = CheckWorkerId(worker); !status.ok()) return status;
    absl::MutexLock writer(&writer_mu_);
    // Hidden from lookups until the snapshot is in, so no one routes on a half-built view.
    DropAllBlocks(worker);
    absl::Status first_failure;
    for (const StoredRun& run : snapshot) {
      absl::Status status = StoreLocked(worker, run.parent_seq_hash, run.blocks);
      if (first_failure.ok()) first_failure = std::move(status);
    }
    SetHidden(worker, false);
    return first_failure;
  }

  void FindMatches(std::span<const uint64_t> seq_hashes,
                   std::vector<WorkerMatch>* matches) const override {
    absl::ReaderMutexLock lock(&mu_);
    tree_.FindMatches(seq_hashes, hidden_, matches);
  }

  WorkerSummary GetWorkerSummary(WorkerId worker) const override {
    absl::ReaderMutexLock lock(&mu_);
    return worker < workers_.size() ? workers_[worker].summary : WorkerSummary{};
  }

  IndexStats GetStats() const override {
    absl::MutexLock writer(&writer_mu_);
    absl::ReaderMutexLock lock(&mu_);
    IndexStats stats;
    stats.nodes = tree_.num_nodes();
    stats.blocks = tree_.num_blocks();
    stats.memory_bytes = sizeof(*this) + tree_.MemoryBytes() +
                         workers_.capacity() * sizeof(WorkerState) + hidden_.capacity();
    for (const WorkerState& state : workers_) {
      stats.block_worker_pairs += state.summary.blocks.num_blocks;
      if (state.lru) stats.memory_bytes += state.lru->MemoryBytes();
    }
    return stats;
  }

  absl::Status CheckConsistency() const override {
    absl::MutexLock writer(&writer_mu_);
    absl::ReaderMutexLock lock(&mu_);
    if (absl::Status status = tree_.CheckConsistency(); !status.ok()) return status;
    std::vector<RadixTree::Run> runs;
    for (WorkerId worker = 0; worker < workers_.size(); ++worker) {
      runs.clear();
      tree_.CollectRuns(worker, &runs);
      uint64_t held = 0;
      for (const RadixTree::Run& run : runs) held += run.length;
      const WorkerState& state = workers_[worker];
      if (held != state.summary.blocks.num_blocks) {
        return absl::InternalError(absl::StrCat("worker ", worker, " holds ", held,
                                                " blocks but counts ",
                                                state.summary.blocks.num_blocks));
      }
      if (state.lru && state.lru->size() != held) {
        return absl::InternalError(absl::StrCat("worker ", worker, " LRU out of step"));
      }
    }
    return absl::OkStatus();
  }

 private:
  struct WorkerState {
    WorkerSummary summary;
    std::unique_ptr<WorkerLru> lru;  // approximate mode only
  };

  bool approximate() const { return options_.max_blocks_per_worker > 0; }

  absl::Status CheckWorkerId(WorkerId worker) const {
    if (worker < options_.max_workers) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat("worker id ", worker, " is not below max_workers ", options_.max_workers));
  }

  WorkerState& EnsureWorker(WorkerId worker) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (worker >= workers_.size()) {
      workers_.resize(worker + 1);
      hidden_.resize(worker + 1, 0);
    }
    WorkerState& state = workers_[worker];
    if (approximate() && !state.lru) state.lru = std::make_unique<WorkerLru>();
    return state;
  }

  void SetHidden(WorkerId worker, bool hidden) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::WriterMutexLock lock(&mu_);
    EnsureWorker(worker);
    hidden_[worker] = hidden ? 1 : 0;
  }

  absl::Status StoreLocked(WorkerId worker, std::optional<uint64_t> parent,
                           std::span<const StoredBlock> blocks)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(writer_mu_) {
    if (blocks.empty()) return absl::OkStatus();
    scratch_hashes_.resize(blocks.size());
    for (size_t i = 0; i < blocks.size(); ++i) scratch_hashes_[i] = blocks[i].seq_hash;
    const std::span<const uint64_t> hashes = scratch_hashes_;
    const size_t section = options_.max_blocks_per_write_section;
    absl::Status status;
    size_t done = 0;
    std::optional<uint64_t> chunk_parent = parent;
    while (true) {
      const size_t chunk = std::min(section, hashes.size() - done);
      ReserveLocations(chunk);
      absl::WriterMutexLock lock(&mu_);
      WorkerState& state = EnsureWorker(worker);
      if (done == 0 && parent.has_value() && !tree_.Holds(worker, *parent)) {
        ++state.summary.orphan_stores;
        return absl::FailedPreconditionError(
            absl::StrCat("worker ", worker, " stored blocks under parent ", *parent,
                         " that it does not hold: events were lost"));
      }
      const auto outcome =
          tree_.Store(worker, chunk_parent, hashes.subspan(done, chunk), &state.summary.blocks);
      // In approximate mode a re-store is how recency is refreshed, not a sign of drift.
      if (!approximate()) state.summary.duplicate_stores += outcome.duplicates;
      done += outcome.applied;
      if (outcome.inconsistent) {
        ++state.summary.inconsistent_stores;
        status = absl::InvalidArgumentError(
            absl::StrCat("worker ", worker, " stored block ", hashes[done],
                         " which the index knows under a different parent"));
        break;
      }
      if (done == hashes.size()) break;
      chunk_parent = hashes[done - 1];
    }
    if (approximate() && done > 0) RefreshAndPrune(worker, hashes.first(done));
    return status;
  }

  // Grows the tree's location map while lookups go on (see the comment on the class): the
  // map is the writer's alone, which the annotations on tree_ cannot express.
  void ReserveLocations(size_t inserts)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(writer_mu_) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    tree_.ReserveForInserts(inserts);
  }

  // Last block first, so each parent ends up more recent than its children. The LRU's map is
  // far larger than the cache, so blocks a few steps ahead are prefetched.
  static constexpr size_t kLruPrefetchDistance = 8;
  void RefreshAndPrune(WorkerId worker, std::span<const uint64_t> stored)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(writer_mu_) {
    const size_t section = options_.max_blocks_per_write_section;
    for (size_t end = stored.size(); end > 0;) {
      absl::WriterMutexLock lock(&mu_);
      WorkerLru& lru = *EnsureWorker(worker).lru;
      const size_t begin = end > section ? end - section : 0;
      for (size_t i = end; i-- > begin;) {
        if (i >= kLruPrefetchDistance) lru.Prefetch(stored[i - kLruPrefetchDistance]);
        lru.Touch(stored[i]);
      }
      end = begin;
    }
    std::vector<uint64_t> victims;
    while (true) {
      absl::WriterMutexLock lock(&mu_);
      WorkerState& state = workers_[worker];
      if (state.lru->size() <= options_.max_blocks_per_worker) break;
      victims.clear();
      while (victims.size() < options_.max_blocks_per_write_section &&
             state.lru->size() > options_.max_blocks_per_worker) {
        victims.push_back(state.lru->PopLeastRecent());
      }
      const uint64_t unknown = tree_.Remove(worker, victims, &state.summary.blocks);
      KVC_CHECK(unknown == 0, "LRU listed a block the worker does not hold");
      state.summary.pruned_blocks += victims.size();
    }
  }

  // Hides the worker and drops its blocks in bounded sections; it stays hidden.
  void DropAllBlocks(WorkerId worker) ABSL_EXCLUSIVE_LOCKS_REQUIRED(writer_mu_) {
    SetHidden(worker, true);
    std::vector<RadixTree::Run> runs;
    {
      absl::ReaderMutexLock lock(&mu_);
      tree_.CollectRuns(worker, &runs);
    }
    size_t next = 0;
    while (next < runs.size()) {
      absl::WriterMutexLock lock(&mu_);
      WorkerState& state = workers_[worker];
      size_t blocks = 0;
      while (next < runs.size() && blocks < options_.max_blocks_per_write_section) {
        tree_.RemoveRun(worker, runs[next], &state.summary.blocks);
        blocks += runs[next].length;
        ++next;
      }
    }
    absl::WriterMutexLock lock(&mu_);
    WorkerState& state = workers_[worker];
    KVC_CHECK(state.summary.blocks == BlockSetDigest{}, "worker's blocks outlived its runs");
    if (state.lru) state.lru = std::make_unique<WorkerLru>();
  }

  const PrefixIndexOptions options_;
  mutable absl::Mutex writer_mu_;
  mutable absl::Mutex mu_ ABSL_ACQUIRED_AFTER(writer_mu_);
  RadixTree tree_ ABSL_GUARDED_BY(mu_);
  std::vector<WorkerState> workers_ ABSL_GUARDED_BY(mu_);
  std::vector<uint8_t> hidden_ ABSL_GUARDED_BY(mu_);  // 1 while a bulk operation runs
  std::vector<uint64_t> scratch_hashes_ ABSL_GUARDED_BY(writer_mu_);
};

}  // namespace

std::unique_ptr<PrefixIndex> NewPrefixIndex(const PrefixIndexOptions& options) {
  return std::make_unique<RadixPrefixIndex>(options);
}

}  // namespace kvc::kvindex
