// The KV block pool's bookkeeping: which block each sequence uses, reference counts, the
// prefix cache (full blocks keyed by their seq hash, common/block_hash.h) and LRU eviction of
// cached blocks nobody references. Pure metadata: it never touches KV memory, so it is tested
// with no backend, and every backend reads the block tables it hands out.
//
// Policy
// - A new sequence reuses every leading prompt block that is cached (a prefix hit) and gets
//   fresh blocks for the rest. Fresh blocks come from the never-cached free list first, then
//   by evicting the least recently released cached block.
// - A sequence releases its blocks last-to-first, so within any chain a child is always
//   evicted before its parent: a cached block's parent stays cached, and the KV events always
//   describe a forest the router can index.
// - When a block becomes full and its hash is already cached (two sequences computed the same
//   prefix at once), the sequence switches to the cached block and its own copy is freed, so
//   no hash is ever cached twice.
// - Every change to the cache is an event in events(): Stored (with parent) when blocks
//   enter it, Removed on eviction, Cleared on reset. digest() summarises the cache contents.
//
// Thread-safety: none. Owned by the engine thread.
#ifndef KVCLUSTER_WORKER_ENGINE_BLOCK_MANAGER_H_
#define KVCLUSTER_WORKER_ENGINE_BLOCK_MANAGER_H_

#include <cstdint>
#include <span>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/block_hash.h"
#include "worker/engine/kv_events.h"

namespace kvc::engine {

using SequenceId = uint64_t;
using BlockId = int32_t;

// The hashes of one full block, as the engine computes them from the sequence's tokens.
struct FullBlockHash {
  uint64_t seq_hash = 0;
  uint64_t local_hash = 0;
};

class BlockManager {
 public:
  struct Options {
    int num_blocks = 0;
    int block_size = kDefaultBlockSize;
    // A random id of this process lifetime, carried by every event.
    uint64_t epoch = 0;
    // Events kept for subscribers that resume from a seq.
    size_t replay_events = 1 << 16;
  };

  explicit BlockManager(const Options& options);

  int block_size() const { return block_size_; }
  int num_blocks() const { return static_cast<int>(blocks_.size()); }
  // Blocks a new allocation can take: never-cached free blocks plus evictable cached ones.
  int num_free_blocks() const { return static_cast<int>(free_.size()) + num_evictable_; }
  // Cached blocks nobody references (kept for reuse; a subset of num_free_blocks()).
  int num_evictable_blocks() const { return num_evictable_; }
  int num_cached_blocks() const { return static_cast<int>(cache_.size()); }
  int num_sequences() const { return static_cast<int>(sequences_.size()); }

  // Leading blocks of `prompt_hashes` that are cached now.
  int CountCachedPrefix(std::span<const uint64_t> prompt_hashes) const;

  // Blocks that AllocateSequence would need from the free pool (after reusing the cached
  // prefix), for admission decisions.
  int BlocksNeeded(std::span<const uint64_t> prompt_hashes, int num_tokens) const;

  // Gives sequence `id` blocks for its first `num_tokens` tokens, reusing the cached prefix of
  // `prompt_hashes` (the seq hashes of its full prompt blocks). Returns how many leading
  // blocks were cached. RESOURCE_EXHAUSTED, with nothing changed, when the pool is too small;
  // ALREADY_EXISTS when the id is in use.
  absl::StatusOr<int> AllocateSequence(SequenceId id, std::span<const uint64_t> prompt_hashes,
                                       int num_tokens);

  // Grows the sequence's table to cover `num_tokens` tokens (decode, chunked prefill).
  // RESOURCE_EXHAUSTED, with nothing changed, when no block is free.
  absl::Status GrowSequence(SequenceId id, int num_tokens);

  // Puts the sequence's next full blocks into the prefix cache: hashes[i] describes block
  // num_committed_blocks(id) + i. The blocks' KV must already be written.
  void CommitFullBlocks(SequenceId id, std::span<const FullBlockHash> hashes);

  // Releases the sequence's blocks (last to first); cached ones stay for reuse.
  void FreeSequence(SequenceId id);

  // Drops every cached block nobody references, and forgets the hashes of referenced ones
  // (they return to the free list when released). Emits Cleared.
  void ResetPrefixCache();

  const std::vector<BlockId>& BlockTable(SequenceId id) const;
  int num_committed_blocks(SequenceId id) const;
  bool HasSequence(SequenceId id) const { return sequences_.contains(id); }

  const KvEventLog& events() const { return events_; }
  const BlockSetDigest& digest() const { return digest_; }

  // Every cached block as Stored events in parent-before-child order, for subscribers that
  // need a snapshot.
  std::vector<StoredEvent> Snapshot() const;

  // The block's reference count and cached hash, for tests and diagnostics.
  int ref_count(BlockId block) const { return blocks_[block].ref_count; }

 private:
  static constexpr BlockId kNone = -1;

  struct Block {
    int ref_count = 0;
    bool cached = false;
    uint64_t seq_hash = 0;
    uint64_t local_hash = 0;
    uint64_t parent_hash = 0;
    bool has_parent = false;
    // Links of the evictable list (cached, ref_count == 0), oldest at head.
    BlockId lru_prev = kNone;
    BlockId lru_next = kNone;
  };

  struct Sequence {
    std::vector<BlockId> blocks;
    int num_committed = 0;
  };

  struct AllocationPlan {
    int total_blocks = 0;
    int cached_blocks = 0;
    // Reduction of num_free_blocks(): fresh blocks plus reused blocks that were evictable.
    int free_blocks_taken = 0;
  };
  AllocationPlan Plan(std::span<const uint64_t> prompt_hashes, int num_tokens) const;

  Sequence& GetSequence(SequenceId id);
  const Sequence& GetSequence(SequenceId id) const;
  // Takes a block for new KV: a never-cached one, else the least recently released cached
  // one (emitting Removed). REQUIRES: num_free_blocks() > 0.
  BlockId TakeFreeBlock(std::vector<uint64_t>* removed);
  void Acquire(BlockId block);
  void Release(BlockId block);
  void LruPushBack(BlockId block);
  void LruUnlink(BlockId block);
  void FlushRemoved(std::vector<uint64_t>* removed);

  const int block_size_;
  std::vector<Block> blocks_;
  std::vector<BlockId> free_;  // never-cached, unreferenced
  BlockId lru_head_ = kNone;
  BlockId lru_tail_ = kNone;
  int num_evictable_ = 0;
  absl::flat_hash_map<uint64_t, BlockId> cache_;
  absl::flat_hash_map<SequenceId, Sequence> sequences_;
  KvEventLog events_;
  BlockSetDigest digest_;
};

}  // namespace kvc::engine

#endif  // KVCLUSTER_WORKER_ENGINE_BLOCK_MANAGER_H_
