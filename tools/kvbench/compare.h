// `kvbench compare`: the same workload under each routing policy, each on a freshly started
// cluster (cold caches), and the report that sets them side by side: a Markdown table, the
// ideal hit rate of the workload and SVG charts (TTFT and E2E CDFs, hit rate per policy,
// requests per worker).
//
// Thread safety: RunCompare uses the calling thread (and the runner's own threads); the
// report writers are pure.
#ifndef KVCLUSTER_TOOLS_KVBENCH_COMPARE_H_
#define KVCLUSTER_TOOLS_KVBENCH_COMPARE_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tools/kvbench/cluster.h"
#include "tools/kvbench/runner.h"
#include "tools/kvbench/stats.h"
#include "tools/kvbench/workload.h"

namespace kvc::kvbench {

struct CompareOptions {
  // Router policies, run in this order.
  std::vector<std::string> policies = {"kv", "round-robin", "random", "least-loaded"};
  ClusterOptions cluster;
  // Builds the workload once, from what the first cluster reports (its vocabulary).
  std::function<absl::StatusOr<Workload>(const ClusterInfo&)> make_workload;
  // router and router_pid are filled for each run.
  RunOptions run;
  // When set, each policy's per-request results go to DIR/results-POLICY.csv.
  std::string results_dir;
};

struct PolicyRun {
  Summary summary;
  RunResult run;
};

struct CompareResult {
  std::string workload;
  size_t requests = 0;
  uint32_t block_size = 0;
  ClusterInfo cluster;
  IdealHits ideal;
  std::vector<PolicyRun> runs;
};

// Starts a cluster per policy, runs the workload, stops the cluster. A cluster that does not
// start, or a run that cannot reach its router, ends the comparison with that error.
absl::StatusOr<CompareResult> RunCompare(const CompareOptions& options);

// The report in Markdown: what ran, the ideal hit rate, the table, and each chart as an image
// link `svg_prefix + NAME.svg` (no links when svg_prefix is empty).
std::string CompareMarkdown(const CompareResult& result, const std::string& svg_prefix);

// The charts, by file name: ttft_cdf.svg, e2e_cdf.svg, hit_rate.svg, load.svg.
std::vector<std::pair<std::string, std::string>> CompareCharts(const CompareResult& result,
                                                               const std::string& title_suffix);

// Writes report.md, summary.json and the charts into `dir` (created when missing).
absl::Status WriteCompareReport(const CompareResult& result, const std::string& dir);

}  // namespace kvc::kvbench

#endif  // KVCLUSTER_TOOLS_KVBENCH_COMPARE_H_
