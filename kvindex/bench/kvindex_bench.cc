// kvc_bench_kvindex: replays the Mooncake conversation trace through simulated clusters of
// N workers routed by the prefix index, and reports the index's throughput, lookup latency
// and memory against the goals of issue 2. See replay.h for what is measured and how.
//
//   kvc_bench_kvindex [--json] [--report FILE] [--workers 8,64,512] [--trace PATH] [--quick]
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/process_setup.h"
#include "kvindex/bench/replay.h"
#include "kvindex/bench/trace.h"

namespace kvc::kvindex::bench {
namespace {

constexpr double kGoalOpsPerSecond = 10e6;
constexpr double kGoalP99Us = 5.0;
constexpr double kGoalBytesPerPair = 64.0;
constexpr uint32_t kHeadlineWorkers = 64;

struct Flags {
  bool json = false;
  bool quick = false;
  std::string report;
  std::string trace = "../shared/data/mooncake/conversation_trace.jsonl";
  std::vector<uint32_t> workers = {8, 64, 512};
  bool workers_given = false;
  std::string command_line;
};

bool ParseFlags(int argc, char** argv, Flags* flags) {
  flags->command_line = "build/bin/kvc_bench_kvindex";
  for (int i = 1; i < argc; ++i) {
    // The report path is scripts/bench's temporary file: not worth recording.
    if (std::string(argv[i]) == "--report") {
      ++i;
    } else {
      absl::StrAppend(&flags->command_line, " ", argv[i]);
    }
  }
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    if (arg == "--json") {
      flags->json = true;
    } else if (arg == "--quick") {
      flags->quick = true;
    } else if (arg == "--report") {
      const char* v = value();
      if (!v) return false;
      flags->report = v;
    } else if (arg == "--trace") {
      const char* v = value();
      if (!v) return false;
      flags->trace = v;
    } else if (arg == "--workers") {
      const char* v = value();
      if (!v) return false;
      flags->workers.clear();
      for (absl::string_view part : absl::StrSplit(v, ',')) {
        uint32_t n = 0;
        if (!absl::SimpleAtoi(part, &n) || n == 0) return false;
        flags->workers.push_back(n);
      }
      flags->workers_given = true;
    } else {
      return false;
    }
  }
  return true;
}

std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string one_minute;
  in >> one_minute;
  return one_minute.empty() ? "unknown" : one_minute;
}

std::string Table(const std::vector<ReplayResult>& runs, double ideal_hit_rate) {
  std::string out =
      "| workers | requests | index ops | ops/s/core (CPU) | ops/s (wall, in replay) | "
      "FindMatches p50 / p99 / max (us) | FindMatches p99, index-only run (us) | "
      "event p99 (us) | (block, worker) pairs | bytes/pair (index / malloc) | nodes | "
      "hit rate (ideal) | mispredicted | anomalies | peak RSS (MB) | CPU share |\n"
      "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const ReplayResult& r : runs) {
    absl::StrAppendFormat(
        &out,
        "| %d | %d | %d | %.2fM | %.2fM | %.2f / %.2f / %.1f | %.2f | %.1f | %d | %.1f / %.1f | "
        "%d | %.1f%% (%.1f%%) | %d | %d | %.0f | %.2f |\n",
        r.workers, r.requests, r.ops(), r.ops_per_cpu_second() / 1e6, r.ops_per_second() / 1e6,
        r.find_matches_p50_us, r.find_matches_p99_us, r.find_matches_max_us,
        r.index_only_find_matches_p99_us, r.event_p99_us, r.stats.block_worker_pairs,
        r.bytes_per_pair(), r.malloc_bytes_per_pair(), r.stats.nodes, 100 * r.hit_rate(),
        100 * ideal_hit_rate, r.mispredicted, r.anomalies, r.peak_rss_mb, r.cpu_share);
  }
  return out;
}

const ReplayResult& Headline(const std::vector<ReplayResult>& runs) {
  for (const ReplayResult& r : runs) {
    if (r.workers == kHeadlineWorkers) return r;
  }
  return runs.front();
}

std::string Goals(const ReplayResult& h) {
  auto verdict = [](bool met) { return met ? "met" : "NOT met"; };
  return absl::StrFormat(
      "| goal (%d workers) | target | measured | |\n|---|---:|---:|---|\n"
      "| index ops/s per core | >= 10M | %.2fM | %s |\n"
      "| FindMatches p99 | <= 5 us | %.2f us | %s |\n"
      "| bytes per (block, worker) | <= 64 | %.1f | %s |\n",
      h.workers, h.ops_per_cpu_second() / 1e6, verdict(h.ops_per_cpu_second() >= kGoalOpsPerSecond),
      h.find_matches_p99_us, verdict(h.find_matches_p99_us <= kGoalP99Us), h.bytes_per_pair(),
      verdict(h.bytes_per_pair() <= kGoalBytesPerPair));
}

std::string Json(const std::vector<ReplayResult>& runs, double ideal_hit_rate) {
  const ReplayResult& h = Headline(runs);
  std::string out = absl::StrFormat(
      "{\"workers\": %d, \"ops_per_sec_per_core\": %.0f, \"find_matches_p50_us\": %.3f, "
      "\"find_matches_p99_us\": %.3f, \"bytes_per_block_worker\": %.2f, "
      "\"malloc_bytes_per_block_worker\": %.2f, \"hit_rate\": %.4f, \"ideal_hit_rate\": %.4f, "
      "\"peak_rss_mb\": %.1f, \"runs\": [",
      h.workers, h.ops_per_cpu_second(), h.find_matches_p50_us, h.find_matches_p99_us,
      h.bytes_per_pair(), h.malloc_bytes_per_pair(), h.hit_rate(), ideal_hit_rate, h.peak_rss_mb);
  for (size_t i = 0; i < runs.size(); ++i) {
    const ReplayResult& r = runs[i];
    absl::StrAppendFormat(
        &out,
        "%s{\"workers\": %d, \"requests\": %d, \"index_ops\": %d, \"ops_per_sec_per_core\": "
        "%.0f, \"ops_per_sec_wall_in_replay\": %.0f, \"find_matches_p50_us\": %.3f, "
        "\"find_matches_p99_us\": %.3f, "
        "\"find_matches_max_us\": %.3f, \"index_only_find_matches_p99_us\": %.3f, "
        "\"event_p99_us\": %.3f, \"block_worker_pairs\": %d, "
        "\"bytes_per_block_worker\": %.2f, \"malloc_bytes_per_block_worker\": %.2f, "
        "\"nodes\": %d, \"blocks\": %d, \"hit_rate\": %.4f, \"mispredicted\": %d, \"anomalies\": "
        "%d, "
        "\"peak_rss_mb\": %.1f, \"cpu_share\": %.3f}",
        i ? ", " : "", r.workers, r.requests, r.ops(), r.ops_per_cpu_second(), r.ops_per_second(),
        r.find_matches_p50_us, r.find_matches_p99_us, r.find_matches_max_us,
        r.index_only_find_matches_p99_us, r.event_p99_us, r.stats.block_worker_pairs,
        r.bytes_per_pair(), r.malloc_bytes_per_pair(), r.stats.nodes, r.stats.blocks, r.hit_rate(),
        r.mispredicted, r.anomalies, r.peak_rss_mb, r.cpu_share);
  }
  return out + "]}";
}

int Main(int argc, char** argv) {
  Flags flags;
  if (!ParseFlags(argc, argv, &flags)) {
    std::fprintf(stderr,
                 "usage: kvc_bench_kvindex [--json] [--report FILE] [--workers 8,64,512] "
                 "[--trace PATH] [--quick]\n");
    return 2;
  }
  size_t max_requests = 0;
  if (flags.quick) {
    max_requests = 2000;
    if (!flags.workers_given) flags.workers = {8};
  }
  auto trace = LoadMooncakeTrace(flags.trace, max_requests);
  if (!trace.ok()) {
    std::fprintf(stderr,
                 "kvc_bench_kvindex: skipped: %s (the Mooncake trace lives in "
                 "../shared/data/mooncake/; pass --trace PATH)\n",
                 std::string(trace.status().message()).c_str());
    if (flags.json) std::printf("{\"skipped\": true}\n");
    return 0;
  }
  ReplayConfig config;
  const double ideal = IdealHitRate(*trace, config.block_size);
  std::vector<ReplayResult> runs;
  for (uint32_t workers : flags.workers) {
    std::fprintf(stderr, "kvc_bench_kvindex: replaying %zu requests on %u workers\n", trace->size(),
                 workers);
    config.workers = workers;
    config.speedup = workers / 4.0;
    runs.push_back(ReplayTrace(*trace, config));
  }
  const std::string table = Table(runs, ideal);
  const std::string goals = Goals(Headline(runs));
  if (flags.json) {
    std::printf("%s\n", Json(runs, ideal).c_str());
  } else {
    std::printf("kvindex on the Mooncake conversation trace (%zu requests)\n\n%s\n%s",
                trace->size(), table.c_str(), goals.c_str());
  }
  if (!flags.report.empty()) {
    std::ofstream report(flags.report);
    const std::time_t now = std::time(nullptr);
    char date[32];
    std::strftime(date, sizeof(date), "%Y-%m-%d %H:%M UTC", std::gmtime(&now));
    report << "## kvindex\n\n"
           << "Command: `" << flags.command_line << "` (" << date << ")  \n"
           << "Machine: " << CpuModelName() << ", " << std::thread::hardware_concurrency()
           << " logical CPUs, load average " << LoadAverage()
           << " at the end (the replay uses one core)  \n"
           << "Trace: Mooncake conversation trace, " << trace->size()
           << " requests, 16-token blocks; each worker caches " << config.capacity_blocks
           << " blocks (LRU, tail-first eviction); routing by least queued + new prefill "
              "blocks; N workers replay the trace N/4 times faster, so load per worker is equal.\n"
           << "An op is one block of a Stored or Removed event applied, or one FindMatches call. "
              "ops/s/core: the replay's index calls applied again to a fresh index, divided by "
              "the thread's CPU time; ops/s (wall): wall time inside index calls during the "
              "replay, which a busy machine inflates (CPU share: CPU time / wall time of the "
              "replay). Latencies are per call during the replay. bytes/pair is the index's own "
              "accounting (malloc: "
              "heap released when the index is destroyed, mallinfo2). Hit rate: leading blocks "
              "the chosen worker had cached; ideal: one unlimited cache shared by all. Peak RSS "
              "is the process's: trace, simulated caches and logged calls included.\n\n"
           << table << "\n"
           << goals;
  }
  return 0;
}

}  // namespace
}  // namespace kvc::kvindex::bench

int main(int argc, char** argv) { return kvc::kvindex::bench::Main(argc, argv); }
