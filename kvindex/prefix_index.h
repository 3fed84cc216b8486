// The router's prefix index: which worker holds which KV blocks, and for a request's block
// hashes, how many leading blocks each worker already holds.
//
// Semantics are those of a radix tree of KV blocks: a block is identified by its seq hash,
// and since seq hashes chain (common/block_hash.h), one hash names the block's whole prefix.
// Each worker holds a set of blocks; the index applies the worker's KV events exactly:
//   - Stored(parent, blocks): blocks[0] is the child of `parent` (or a first block when
//     absent), each next block the child of the one before. The worker must hold `parent`;
//     otherwise events were lost, and the Stored is rejected (FailedPrecondition), counted in
//     orphan_stores, and leaves the worker's state as it was.
//   - Removed(hashes): a hash the worker does not hold is counted (unknown_removals) and
//     skipped. Removing an inner block is allowed; the worker then matches only up to it.
//   - Cleared: the worker holds nothing.
// Storing a block the worker already holds is counted (duplicate_stores) and is a no-op.
// Both counters are signs that the router's view drifted from the worker's.
//
// Approximate mode (options.max_blocks_per_worker > 0) is for routers that get no events:
// the router stores each request's whole chain (no parent) on the worker it routed to, a
// re-store refreshes recency instead of counting as a duplicate, and when a worker passes the
// bound its least recently used blocks are pruned. A Stored refreshes its blocks from the last
// to the first, so a parent is always more recent than its children and pruning eats chains
// tail-first: what a worker holds stays prefix-shaped.
//
// Thread safety: every method may be called from any thread. Any number of threads may call
// the const methods (FindMatches, summaries, stats) concurrently with one another and with
// the mutators; mutators are serialized among themselves (one writer at a time).
//
// How, and why this way: every request shares the tree's first node (a common system prompt;
// in the Mooncake trace every request starts with the same hash id), so sharding the tree by
// its root gives no parallelism, and a lock-free tree whose nodes split and merge would need
// RCU-style reclamation. Instead one reader-writer lock guards the tree: lookups share it and
// never wait for one another, and the writer holds it exclusively only for bounded sections
// of at most options.max_blocks_per_write_section blocks (a Stored is applied in chunks;
// Removed, ApplyCleared, RemoveWorker, ReplaceWorker and approximate-mode pruning work in
// chunks too; a chunk of a bulk operation may run over by one tree node's worth of blocks).
// A lookup (about a microsecond) therefore waits for at most one short section, never for a
// whole bulk operation, and absl::Mutex lets a waiting writer in ahead of new readers, so a
// stream of lookups cannot starve event ingestion. Between sections readers see a prefix of
// the event applied, which is a state the worker itself passed through. While a bulk
// operation on a worker is in progress, lookups leave that worker out altogether rather than
// report a half-updated view of it. The writer-side map from block to tree position, which
// lookups never read, is grown before an exclusive section rather than inside one, so its
// rehashes (tens of milliseconds at millions of blocks) stall no lookup. GetStats and
// CheckConsistency read that map, so they wait for a mutator in progress; FindMatches and
// GetWorkerSummary never do.
#ifndef KVCLUSTER_KVINDEX_PREFIX_INDEX_H_
#define KVCLUSTER_KVINDEX_PREFIX_INDEX_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "common/block_hash.h"

namespace kvc::kvindex {

// Dense worker number chosen by the caller (the router's registry), below
// PrefixIndexOptions::max_workers. Dense so that per-worker state is an array.
using WorkerId = uint32_t;

struct StoredBlock {
  uint64_t seq_hash = 0;
  // Kept for fidelity with the event; the index needs only seq hashes, which already chain.
  uint64_t local_hash = 0;
};

// One Stored event's worth of blocks, as a snapshot lists them.
struct StoredRun {
  std::optional<uint64_t> parent_seq_hash;
  std::vector<StoredBlock> blocks;
};

struct WorkerMatch {
  WorkerId worker = 0;
  // How many leading blocks of the request the worker holds (always > 0 in results).
  uint32_t matched_blocks = 0;
  friend bool operator==(const WorkerMatch&, const WorkerMatch&) = default;
};

struct WorkerSummary {
  // Block count and digest, computed exactly as the worker computes them over its cache.
  BlockSetDigest blocks;
  uint64_t orphan_stores = 0;        // Stored events rejected: parent not held.
  uint64_t duplicate_stores = 0;     // blocks stored while already held (exact mode).
  uint64_t unknown_removals = 0;     // blocks removed while not held.
  uint64_t inconsistent_stores = 0;  // Stored events whose hashes contradict the tree.
  uint64_t pruned_blocks = 0;        // blocks dropped by the capacity bound (approximate mode).
  friend bool operator==(const WorkerSummary&, const WorkerSummary&) = default;
};

struct IndexStats {
  uint64_t nodes = 0;               // tree nodes (implementation-defined granularity)
  uint64_t blocks = 0;              // distinct blocks in the tree
  uint64_t block_worker_pairs = 0;  // sum over workers of blocks held
  uint64_t memory_bytes = 0;        // heap and inline bytes the index owns
};

struct PrefixIndexOptions {
  // 0: exact mode, fed by events. > 0: approximate mode with this many blocks per worker.
  uint64_t max_blocks_per_worker = 0;
  // Worker ids must be below this; larger ids are rejected with InvalidArgument.
  WorkerId max_workers = 1 << 16;
  // Upper bound on blocks touched while holding the lock exclusively, which bounds how long a
  // lookup can wait: 64 blocks take a few microseconds to apply, while the lock round trip
  // between sections costs well under a nanosecond per block.
  size_t max_blocks_per_write_section = 64;
};

class PrefixIndex {
 public:
  virtual ~PrefixIndex() = default;

  // Returns FailedPrecondition when `parent_seq_hash` is not held by the worker (nothing is
  // applied), InvalidArgument for a bad worker id or when a block's hash is already in the
  // tree under another parent (the blocks before it stay applied).
  virtual absl::Status ApplyStored(WorkerId worker, std::optional<uint64_t> parent_seq_hash,
                                   std::span<const StoredBlock> blocks) = 0;
  virtual absl::Status ApplyRemoved(WorkerId worker, std::span<const uint64_t> seq_hashes) = 0;
  // Drops every block of the worker; its counters are kept.
  virtual absl::Status ApplyCleared(WorkerId worker) = 0;
  // Forgets the worker: its blocks and its counters.
  virtual absl::Status RemoveWorker(WorkerId worker) = 0;
  // Replaces the worker's blocks by a snapshot (runs in parent-before-child order); counters
  // are kept. Runs that fail are skipped and counted as ApplyStored counts them; the first
  // failure is returned after the whole snapshot was applied.
  virtual absl::Status ReplaceWorker(WorkerId worker, std::span<const StoredRun> snapshot) = 0;

  // Fills *matches (cleared first) with every worker holding at least the request's first
  // block, with how many leading blocks it holds, sorted by worker. Stops reading the request
  // as soon as no worker matches further. `seq_hashes` is a request's chain from its first
  // block (as common/block_hash.h computes it): because each seq hash commits to all blocks
  // before it, the lookup compares O(log n) hashes per tree node rather than every block.
  virtual void FindMatches(std::span<const uint64_t> seq_hashes,
                           std::vector<WorkerMatch>* matches) const = 0;

  // A worker never seen (or removed) has an all-zero summary.
  virtual WorkerSummary GetWorkerSummary(WorkerId worker) const = 0;
  virtual IndexStats GetStats() const = 0;
  // Verifies internal invariants (O(size)); OK or Internal with what is wrong. For tests and
  // debugging endpoints.
  virtual absl::Status CheckConsistency() const = 0;
};

// The radix-tree index.
std::unique_ptr<PrefixIndex> NewPrefixIndex(const PrefixIndexOptions& options = {});

}  // namespace kvc::kvindex

#endif  // KVCLUSTER_KVINDEX_PREFIX_INDEX_H_
