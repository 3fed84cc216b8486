#include "kvindex/bench/replay.h"

#include <malloc.h>
#include <sys/resource.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <limits>
#include <optional>
#include <span>

#include "absl/container/flat_hash_map.h"
#include "kvindex/bench/simulated_worker.h"

namespace kvc::kvindex::bench {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

double Percentile(std::vector<double>& values, double fraction) {
  if (values.empty()) return 0;
  const size_t rank = std::min(values.size() - 1, static_cast<size_t>(fraction * values.size()));
  std::nth_element(values.begin(), values.begin() + rank, values.end());
  return values[rank];
}

uint64_t MallocInUse() {
  const struct mallinfo2 info = mallinfo2();
  return info.uordblks + info.hblkhd;
}

double ThreadCpuSeconds() {
  timespec now;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return now.tv_sec + now.tv_nsec / 1e9;
}

double PeakRssMb() {
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss / 1024.0;
}

// Every index call of the replay, kept so that it can be replayed again with nothing else
// running on the thread: see ReplayResult::ops_per_cpu_second.
class CallLog {
 public:
  void Find(std::span<const uint64_t> seq_hashes) { Add(Kind::kFind, 0, {}, seq_hashes, {}); }
  void Removed(WorkerId worker, std::span<const uint64_t> seq_hashes) {
    Add(Kind::kRemoved, worker, {}, seq_hashes, {});
  }
  void Stored(WorkerId worker, std::optional<uint64_t> parent,
              std::span<const StoredBlock> blocks) {
    Add(Kind::kStored, worker, parent, {}, blocks);
  }

  // Applies every call to `index`; returns the CPU seconds it took, and each lookup's latency
  // in *lookup_us (two clock reads per lookup, a negligible share of the CPU time).
  double ReplayInto(PrefixIndex& index, std::vector<double>* lookup_us) const {
    std::vector<WorkerMatch> matches;
    lookup_us->clear();
    const double start = ThreadCpuSeconds();
    for (const Call& call : calls_) {
      const std::span<const uint64_t> hashes(hashes_.data() + call.begin, call.count);
      switch (call.kind) {
        case Kind::kFind: {
          const Clock::time_point begin = Clock::now();
          index.FindMatches(hashes, &matches);
          lookup_us->push_back(Seconds(Clock::now() - begin) * 1e6);
          break;
        }
        case Kind::kRemoved:
          (void)index.ApplyRemoved(call.worker, hashes);
          break;
        case Kind::kStored:
          (void)index.ApplyStored(call.worker, call.parent,
                                  std::span(blocks_.data() + call.begin, call.count));
          break;
      }
    }
    return ThreadCpuSeconds() - start;
  }

  uint64_t bytes() const {
    return calls_.capacity() * sizeof(Call) + hashes_.capacity() * sizeof(uint64_t) +
           blocks_.capacity() * sizeof(StoredBlock);
  }

 private:
  enum class Kind : uint8_t { kFind, kRemoved, kStored };
  struct Call {
    Kind kind;
    WorkerId worker;
    std::optional<uint64_t> parent;
    size_t begin;
    size_t count;
  };
  void Add(Kind kind, WorkerId worker, std::optional<uint64_t> parent,
           std::span<const uint64_t> hashes, std::span<const StoredBlock> blocks) {
    const size_t begin = blocks.empty() ? hashes_.size() : blocks_.size();
    calls_.push_back({kind, worker, parent, begin, blocks.empty() ? hashes.size() : blocks.size()});
    hashes_.insert(hashes_.end(), hashes.begin(), hashes.end());
    blocks_.insert(blocks_.end(), blocks.begin(), blocks.end());
  }

  std::vector<Call> calls_;
  std::vector<uint64_t> hashes_;
  std::vector<StoredBlock> blocks_;
};

}  // namespace

double IdealHitRate(const std::vector<TraceRequest>& trace, uint32_t block_size) {
  // Hash ids chain (equal ids at a position mean equal prefixes), so it is enough to know, per
  // id, how many of its blocks any earlier request had in full.
  const uint32_t blocks_per_id = kTraceTokensPerHashId / block_size;
  absl::flat_hash_map<uint64_t, uint32_t> seen_blocks;
  uint64_t total = 0;
  uint64_t hits = 0;
  for (const TraceRequest& request : trace) {
    const size_t full_blocks = request.input_tokens / block_size;
    bool leading = true;
    for (size_t p = 0; p < request.hash_ids.size(); ++p) {
      const size_t here = std::min<size_t>(
          blocks_per_id, full_blocks > p * blocks_per_id ? full_blocks - p * blocks_per_id : 0);
      if (here == 0) break;
      total += here;
      uint32_t& seen = seen_blocks[request.hash_ids[p]];
      if (leading) {
        hits += std::min<size_t>(here, seen);
        leading = seen >= here && here == blocks_per_id;
      }
      seen = std::max<uint32_t>(seen, static_cast<uint32_t>(here));
    }
  }
  return total ? double(hits) / total : 0;
}

ReplayResult ReplayTrace(const std::vector<TraceRequest>& trace, const ReplayConfig& config) {
  ReplayResult result;
  result.workers = config.workers;
  const Clock::time_point wall_start = Clock::now();
  const double cpu_start = ThreadCpuSeconds();
  std::unique_ptr<PrefixIndex> index = NewPrefixIndex();
  std::vector<SimulatedWorker> workers(config.workers, SimulatedWorker(config.capacity_blocks));
  std::vector<double> queued_blocks(config.workers, 0);
  std::vector<uint64_t> prefilled_blocks(config.workers, 0);
  std::vector<uint32_t> matched_by_worker(config.workers, 0);
  std::vector<double> lookup_us;
  std::vector<double> event_us;
  lookup_us.reserve(trace.size());
  std::vector<uint64_t> seq_hashes;
  std::vector<uint64_t> local_hashes;
  std::vector<WorkerMatch> matches;
  AdmitEvents events;
  CallLog log;
  Clock::duration in_index{};
  int64_t last_ms = trace.empty() ? 0 : trace.front().timestamp_ms;

  for (size_t r = 0; r < trace.size(); ++r) {
    const TraceRequest& request = trace[r];
    ExpandRequest(request, config.block_size, &seq_hashes, &local_hashes);
    if (seq_hashes.empty()) continue;
    ++result.requests;
    const double elapsed_s = (request.timestamp_ms - last_ms) / 1000.0 / config.speedup;
    last_ms = request.timestamp_ms;
    for (double& queued : queued_blocks) {
      queued = std::max(0.0, queued - elapsed_s * config.prefill_blocks_per_second);
    }

    Clock::time_point start = Clock::now();
    index->FindMatches(seq_hashes, &matches);
    Clock::duration took = Clock::now() - start;
    in_index += took;
    lookup_us.push_back(Seconds(took) * 1e6);
    ++result.lookups;
    log.Find(seq_hashes);

    // Route: least queued-plus-new prefill work; ties (idle workers with the same match) go to
    // the worker that has prefilled least so far, so that every worker takes part.
    std::fill(matched_by_worker.begin(), matched_by_worker.end(), 0);
    for (const WorkerMatch& match : matches) matched_by_worker[match.worker] = match.matched_blocks;
    uint32_t chosen = 0;
    double best_cost = std::numeric_limits<double>::infinity();
    for (uint32_t w = 0; w < config.workers; ++w) {
      const double cost = queued_blocks[w] + double(seq_hashes.size() - matched_by_worker[w]);
      if (cost < best_cost ||
          (cost == best_cost && prefilled_blocks[w] < prefilled_blocks[chosen])) {
        best_cost = cost;
        chosen = w;
      }
    }
    SimulatedWorker& worker = workers[chosen];
    const size_t hits = worker.LeadingHits(seq_hashes);
    if (hits != matched_by_worker[chosen]) ++result.mispredicted;
    result.request_blocks += seq_hashes.size();
    result.hit_blocks += hits;
    queued_blocks[chosen] += double(seq_hashes.size() - hits);
    prefilled_blocks[chosen] += seq_hashes.size() - hits;

    worker.Admit(seq_hashes, local_hashes, &events);
    if (!events.removed.empty()) {
      start = Clock::now();
      const absl::Status status = index->ApplyRemoved(chosen, events.removed);
      took = Clock::now() - start;
      in_index += took;
      event_us.push_back(Seconds(took) * 1e6);
      if (!status.ok()) ++result.anomalies;
      result.removed_blocks += events.removed.size();
      log.Removed(chosen, events.removed);
    }
    for (const StoredEvent& stored : events.stored) {
      start = Clock::now();
      const absl::Status status = index->ApplyStored(chosen, stored.parent_seq_hash, stored.blocks);
      took = Clock::now() - start;
      in_index += took;
      event_us.push_back(Seconds(took) * 1e6);
      if (!status.ok()) ++result.anomalies;
      result.stored_blocks += stored.blocks.size();
      log.Stored(chosen, stored.parent_seq_hash, stored.blocks);
    }
    if ((r + 1) % 2000 == 0) {
      std::fprintf(stderr, "  %u workers: %zu/%zu requests\n", config.workers, r + 1, trace.size());
    }
  }

  result.index_seconds = Seconds(in_index);
  result.find_matches_p50_us = Percentile(lookup_us, 0.50);
  result.find_matches_p99_us = Percentile(lookup_us, 0.99);
  result.find_matches_max_us =
      lookup_us.empty() ? 0 : *std::max_element(lookup_us.begin(), lookup_us.end());
  result.event_p99_us = Percentile(event_us, 0.99);
  result.stats = index->GetStats();
  for (uint32_t w = 0; w < config.workers; ++w) {
    const WorkerSummary summary = index->GetWorkerSummary(w);
    result.anomalies += summary.orphan_stores + summary.duplicate_stores +
                        summary.unknown_removals + summary.inconsistent_stores;
    if (summary.blocks.num_blocks != workers[w].size()) ++result.anomalies;
  }
  result.peak_rss_mb = PeakRssMb();
  // What the index holds on the heap: in use with it, minus in use once it is gone (the
  // simulated workers stay alive across both readings).
  const uint64_t malloc_with_index = MallocInUse();
  index.reset();
  const uint64_t malloc_without_index = MallocInUse();
  result.malloc_index_bytes = malloc_with_index - malloc_without_index;
  result.wall_seconds = Seconds(Clock::now() - wall_start);
  result.cpu_share = (ThreadCpuSeconds() - cpu_start) / result.wall_seconds;
  result.call_log_mb = log.bytes() / 1e6;

  // The same calls again on a fresh index, timed by the thread's CPU clock: preemption by
  // other processes does not count, so this is the figure per core.
  std::unique_ptr<PrefixIndex> again = NewPrefixIndex();
  result.index_cpu_seconds = log.ReplayInto(*again, &lookup_us);
  result.index_only_find_matches_p99_us = Percentile(lookup_us, 0.99);
  return result;
}

}  // namespace kvc::kvindex::bench
