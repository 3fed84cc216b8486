// What kvbench measures per request, and the summary of a run: latency percentiles,
// throughput, cache hit rate and how evenly the requests spread over the workers.
//
// Thread safety: plain values and pure functions.
#ifndef KVCLUSTER_TOOLS_KVBENCH_STATS_H_
#define KVCLUSTER_TOOLS_KVBENCH_STATS_H_

#include <cstdint>
#include <string>
#include <vector>

namespace kvc::kvbench {

struct RequestResult {
  // Position in the workload, and its label.
  size_t index = 0;
  std::string label;
  bool ok = false;
  // The gRPC status when the request failed ("UNAVAILABLE: no worker ...").
  std::string error;
  // When it was sent, in seconds after the run started, and how late that was against its
  // arrival time (open-loop runs; a client that cannot keep up shows here).
  double send_s = 0;
  double send_lag_ms = 0;
  // Time to the first token, mean time per output token after it, send to end of stream.
  double ttft_ms = 0;
  double tpot_ms = 0;
  double e2e_ms = 0;
  // From the result's usage report.
  uint32_t prompt_tokens = 0;
  uint32_t cached_tokens = 0;
  uint32_t completion_tokens = 0;
  std::string worker_id;
};

// The p-th percentile (p in [0, 100]) with linear interpolation between the closest ranks
// (numpy's default); 0 for no values.
double Percentile(std::vector<double> values, double p);

struct WorkerShare {
  std::string worker_id;
  uint64_t requests = 0;
  uint64_t prompt_tokens = 0;
  // Prompt tokens the worker had to compute (prompt - cached).
  uint64_t prefill_tokens = 0;
};

// The router process's use of the machine and the freshness of its index during a run.
struct RouterUsage {
  bool measured = false;
  // CPU time (user + system) of the kvc-router process over the run, and that divided by the
  // run's wall time (1.0 = one core busy).
  double cpu_seconds = 0;
  double cpu_cores = 0;
  // GetStats' event lag (the age of the last applied KV event batch, the worst worker),
  // sampled about once a second: the largest and the mean sample.
  double event_lag_max_s = 0;
  double event_lag_mean_s = 0;
  int event_lag_samples = 0;
  // GetStats at the end of the run: the share of requests whose cached tokens the index
  // predicted exactly.
  double routing_accuracy = 0;
};

struct Summary {
  std::string name;
  size_t requests = 0;
  size_t failed = 0;
  double duration_s = 0;
  double ttft_p50_ms = 0, ttft_p90_ms = 0, ttft_p99_ms = 0, ttft_mean_ms = 0;
  double tpot_p50_ms = 0;
  double e2e_p50_ms = 0, e2e_p99_ms = 0;
  // Successful requests per second, and generated tokens per second, over the run.
  double requests_per_s = 0;
  double output_tokens_per_s = 0;
  uint64_t prompt_tokens = 0;
  uint64_t cached_tokens = 0;
  // cached / prompt tokens over the successful requests.
  double hit_rate = 0;
  // One entry per worker of the cluster (those that served nothing included), by id.
  std::vector<WorkerShare> workers;
  // Most requests on one worker over the mean per worker (1.0 = perfectly even); the same
  // for prefill tokens.
  double max_mean_requests = 0;
  double max_mean_prefill = 0;
  RouterUsage router;
};

// Summarizes a run that took `duration_s`; `worker_ids` are the cluster's workers (workers
// that served requests but are not listed are added).
Summary Summarize(const std::string& name, const std::vector<RequestResult>& results,
                  const std::vector<std::string>& worker_ids, double duration_s);

// The empirical CDF of the successful requests' values, as (value, fraction <= value) points.
std::vector<std::pair<double, double>> Cdf(std::vector<double> values);

}  // namespace kvc::kvbench

#endif  // KVCLUSTER_TOOLS_KVBENCH_STATS_H_
