// kvbench's outputs: per-request results as CSV or JSON lines, a run's summary as JSON and
// as readable text, and the Markdown table that compares policies.
//
// Thread safety: free functions with no shared state.
#ifndef KVCLUSTER_TOOLS_KVBENCH_REPORT_H_
#define KVCLUSTER_TOOLS_KVBENCH_REPORT_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"
#include "tools/kvbench/stats.h"

namespace kvc::kvbench {

// One row per request: CSV when `path` ends in .csv, JSON lines when it ends in .jsonl.
// INVALID_ARGUMENT for another ending, INTERNAL when the file cannot be written.
absl::Status WriteResults(const std::string& path, const std::vector<RequestResult>& results);

// The CSV form of WriteResults, with a header line.
std::string ResultsCsv(const std::vector<RequestResult>& results);

nlohmann::json SummaryJson(const Summary& summary);

// A few readable lines: latencies, throughput, hit rate, requests per worker.
std::string SummaryText(const Summary& summary);

// One row per summary: TTFT p50/p90/p99, E2E p50/p99, throughput, hit rate, max/mean load;
// router CPU and event lag columns when any summary measured them.
std::string MarkdownTable(const std::vector<Summary>& summaries);

// Writes `text` to `path`; INTERNAL when it cannot.
absl::Status WriteFile(const std::string& path, const std::string& text);

}  // namespace kvc::kvbench

#endif  // KVCLUSTER_TOOLS_KVBENCH_REPORT_H_
