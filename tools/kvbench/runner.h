// Sends a workload to a router's Generate RPC and measures every request. Calls use gRPC's
// callback API over a few channels, so thousands of requests in flight need no thread each;
// one dispatcher thread paces them (open loop: each at its arrival time; closed loop: a fixed
// number in flight), and a progress line goes to stderr while the run lasts.
//
// Thread safety: RunWorkload and QueryCluster may be called from any thread; a run's own
// threads share state only under its mutex.
#ifndef KVCLUSTER_TOOLS_KVBENCH_RUNNER_H_
#define KVCLUSTER_TOOLS_KVBENCH_RUNNER_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tools/kvbench/stats.h"
#include "tools/kvbench/workload.h"

namespace kvc::kvbench {

// What the router says about its workers (ListWorkers).
struct ClusterInfo {
  // worker_id of every READY worker.
  std::vector<std::string> worker_ids;
  // The smallest vocabulary and context window among them, their block size and backend.
  uint32_t vocab_size = 0;
  uint32_t max_context_tokens = 0;
  uint32_t block_size = 0;
  // The smallest KV capacity among them, in blocks, and the KV bytes per token.
  uint64_t capacity_blocks = 0;
  uint64_t kv_bytes_per_token = 0;
  std::string backend;
  std::string model_name;
};

// UNAVAILABLE when the router cannot be reached within `timeout` or has no READY worker.
absl::StatusOr<ClusterInfo> QueryCluster(const std::string& router, absl::Duration timeout);

struct RunOptions {
  std::string router;
  // > 0: closed loop with this many requests in flight (arrival times ignored); 0: open loop.
  int concurrency = 0;
  // gRPC channels (connections) the calls are spread over.
  int channels = 4;
  // Deadline of each request.
  absl::Duration request_timeout = absl::Minutes(10);
  // Progress on stderr, each line starting with this name; empty: no progress.
  std::string progress_name;
  // The kvc-router process to measure (CPU from /proc/PID/stat); 0: not measured. GetStats
  // is sampled for the event lag either way.
  pid_t router_pid = 0;
};

struct RunResult {
  // One per workload request, in workload order.
  std::vector<RequestResult> results;
  // From the first send to the last request's end.
  double duration_s = 0;
  RouterUsage router;
};

// Sends every request of the workload and waits for all of them; failed requests are
// recorded, not fatal. INVALID_ARGUMENT for bad options, UNAVAILABLE when the router cannot
// be reached.
absl::StatusOr<RunResult> RunWorkload(const Workload& workload, const RunOptions& options);

}  // namespace kvc::kvbench

#endif  // KVCLUSTER_TOOLS_KVBENCH_RUNNER_H_
