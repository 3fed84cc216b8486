// A worker's prefix cache as the benchmark simulates it: a fixed number of KV blocks with LRU
// eviction that emits the KV events a real worker would (Removed for evictions, Stored for
// newly cached blocks with their parent), as vLLM's prefix cache does. A request's blocks are
// freed tail first, so a chain's last block is the least recent of its chain and evictions eat
// chains from the end, keeping the cache prefix-shaped.
//
// Thread safety: none; one replay thread owns all simulated workers.
#ifndef KVCLUSTER_KVINDEX_BENCH_SIMULATED_WORKER_H_
#define KVCLUSTER_KVINDEX_BENCH_SIMULATED_WORKER_H_

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "common/check.h"
#include "kvindex/prefix_index.h"
#include "kvindex/worker_lru.h"

namespace kvc::kvindex::bench {

struct StoredEvent {
  std::optional<uint64_t> parent_seq_hash;
  std::vector<StoredBlock> blocks;
};

// The events one admitted request caused, in the order the worker sends them.
struct AdmitEvents {
  std::vector<uint64_t> removed;
  std::vector<StoredEvent> stored;
};

class SimulatedWorker {
 public:
  explicit SimulatedWorker(size_t capacity_blocks) : capacity_(capacity_blocks) {}

  // How many leading blocks of the request are cached (what the worker would report).
  size_t LeadingHits(std::span<const uint64_t> seq_hashes) const {
    size_t hits = 0;
    while (hits < seq_hashes.size() && cache_.Contains(seq_hashes[hits])) ++hits;
    return hits;
  }

  // Runs the request's prefill: caches all its blocks, evicting the least recently used
  // others. REQUIRES: the request fits in the cache.
  void Admit(std::span<const uint64_t> seq_hashes, std::span<const uint64_t> local_hashes,
             AdmitEvents* events) {
    KVC_CHECK(seq_hashes.size() <= capacity_, "request larger than the cache");
    events->removed.clear();
    events->stored.clear();
    size_t missing = 0;
    for (size_t i = seq_hashes.size(); i-- > 0;) {
      if (cache_.Contains(seq_hashes[i])) {
        cache_.Touch(seq_hashes[i]);  // in use: protected from this request's evictions
      } else {
        ++missing;
      }
    }
    while (cache_.size() + missing > capacity_) events->removed.push_back(cache_.PopLeastRecent());
    // Each stretch of missing blocks is one Stored event under the block before it.
    bool previous_missing = false;
    for (size_t i = 0; i < seq_hashes.size(); ++i) {
      const bool is_missing = !cache_.Contains(seq_hashes[i]);
      if (is_missing && !previous_missing) {
        StoredEvent event;
        if (i > 0) event.parent_seq_hash = seq_hashes[i - 1];
        events->stored.push_back(std::move(event));
      }
      if (is_missing) events->stored.back().blocks.push_back({seq_hashes[i], local_hashes[i]});
      previous_missing = is_missing;
    }
    // Freed tail first: the first block ends up the most recent.
    for (size_t i = seq_hashes.size(); i-- > 0;) cache_.Touch(seq_hashes[i]);
  }

  size_t size() const { return cache_.size(); }

 private:
  size_t capacity_;
  internal::WorkerLru cache_;
};

}  // namespace kvc::kvindex::bench

#endif  // KVCLUSTER_KVINDEX_BENCH_SIMULATED_WORKER_H_
