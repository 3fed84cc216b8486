// Replays the Mooncake trace through a simulated cluster whose router uses the prefix index,
// and measures the index: every index call is timed on the replay thread (one core), and the
// simulation around it (worker caches, routing arithmetic, hashing) is not.
//
// An index op is one block applied from a Stored event, one block applied from a Removed
// event, or one FindMatches call. Throughput per core is measured on a second, index-only run:
// every index call of the replay is logged, then applied again to a fresh index in a tight
// loop timed by the thread's CPU clock (so time lost to other processes on a shared machine
// does not count). Lookup latencies come from the replay itself, where the simulation between
// calls keeps the index's memory out of cache, as a router's other work would.
//
// Thread safety: ReplayTrace uses only its arguments and locals.
#ifndef KVCLUSTER_KVINDEX_BENCH_REPLAY_H_
#define KVCLUSTER_KVINDEX_BENCH_REPLAY_H_

#include <cstdint>
#include <vector>

#include "kvindex/bench/trace.h"
#include "kvindex/prefix_index.h"

namespace kvc::kvindex::bench {

struct ReplayConfig {
  uint32_t workers = 64;
  // Blocks of 16 tokens each simulated worker caches: 8192 blocks = 131,072 tokens, what an
  // 80 GB GPU holds for a 70B model split over a few GPUs, or a 40 GB one for an 8B model. The
  // trace has ~5.7M distinct blocks, so it fits neither in one worker nor in all 512 together:
  // evictions are constant.
  size_t capacity_blocks = 8192;
  uint32_t block_size = 16;
  // Routing cost per worker = queued prefill blocks + blocks it would have to prefill; the
  // queue drains at this many blocks per second of trace time (16k tokens/s of prefill).
  double prefill_blocks_per_second = 1000;
  // The trace is replayed this many times faster than recorded. kvc_bench_kvindex uses
  // workers / 4: the load per worker is then the same at every cluster size (about half of
  // its prefill rate), so all N workers take part; at the recorded rate a few would serve it.
  double speedup = 1;
};

struct ReplayResult {
  uint32_t workers = 0;
  size_t requests = 0;
  uint64_t stored_blocks = 0;    // blocks applied from Stored events
  uint64_t removed_blocks = 0;   // blocks applied from Removed events
  uint64_t lookups = 0;          // FindMatches calls
  double index_seconds = 0;      // wall time inside index calls during the replay
  double index_cpu_seconds = 0;  // CPU time of the index-only run of the same calls
  double call_log_mb = 0;        // memory the logged calls took
  double wall_seconds = 0;       // the whole replay, simulation included
  // CPU time the replay thread got / wall time: below 1 when the machine was busy with other
  // work, which inflates every timed figure.
  double cpu_share = 0;
  double find_matches_p50_us = 0;
  double find_matches_p99_us = 0;
  double find_matches_max_us = 0;
  double event_p99_us = 0;  // per event call (Stored or Removed)
  // FindMatches p99 in the index-only run, where nothing else evicts the index from cache.
  double index_only_find_matches_p99_us = 0;
  IndexStats stats;                 // at the end of the replay
  uint64_t malloc_index_bytes = 0;  // heap freed when the index was destroyed (mallinfo2)
  uint64_t request_blocks = 0;
  uint64_t hit_blocks = 0;    // leading blocks the chosen worker had cached
  uint64_t mispredicted = 0;  // requests where the index's match != the worker's cache
  uint64_t anomalies = 0;     // orphan/duplicate/unknown events and count mismatches
  double peak_rss_mb = 0;     // process peak so far

  uint64_t ops() const { return stored_blocks + removed_blocks + lookups; }
  double ops_per_second() const { return index_seconds > 0 ? ops() / index_seconds : 0; }
  double ops_per_cpu_second() const {
    return index_cpu_seconds > 0 ? ops() / index_cpu_seconds : 0;
  }
  double bytes_per_pair() const {
    return stats.block_worker_pairs ? double(stats.memory_bytes) / stats.block_worker_pairs : 0;
  }
  double malloc_bytes_per_pair() const {
    return stats.block_worker_pairs ? double(malloc_index_bytes) / stats.block_worker_pairs : 0;
  }
  double hit_rate() const { return request_blocks ? double(hit_blocks) / request_blocks : 0; }
};

ReplayResult ReplayTrace(const std::vector<TraceRequest>& trace, const ReplayConfig& config);

// Fraction of blocks that an unlimited cache shared by all requests would hit (a block hits
// when it and every block before it appeared in an earlier request).
double IdealHitRate(const std::vector<TraceRequest>& trace, uint32_t block_size);

}  // namespace kvc::kvindex::bench

#endif  // KVCLUSTER_KVINDEX_BENCH_REPLAY_H_
