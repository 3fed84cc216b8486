#include "tools/kvbench/compare.h"

#include <cstdio>
#include <filesystem>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "tools/kvbench/report.h"
#include "tools/kvbench/svg.h"

namespace kvc::kvbench {
namespace {

void Progress(const std::string& message) {
  std::fprintf(stderr, "kvbench compare: %s\n", message.c_str());
}

// The CDF of one latency as 201 points (every half percentile), enough for a smooth curve
// without one point per request.
LineSeries LatencyCdf(const std::string& name, const std::vector<RequestResult>& results,
                      double RequestResult::*field) {
  std::vector<double> values;
  for (const RequestResult& r : results) {
    if (r.ok) values.push_back(r.*field);
  }
  LineSeries series{name, {}};
  if (values.empty()) return series;
  for (int step = 0; step <= 200; ++step) {
    series.points.emplace_back(Percentile(values, step / 2.0), step / 200.0);
  }
  return series;
}

const Summary* Find(const CompareResult& result, const std::string& policy) {
  for (const PolicyRun& run : result.runs) {
    if (run.summary.name == policy) return &run.summary;
  }
  return nullptr;
}

}  // namespace

absl::StatusOr<CompareResult> RunCompare(const CompareOptions& options) {
  if (options.policies.empty()) return absl::InvalidArgumentError("no policy to compare");
  if (!options.make_workload) return absl::InvalidArgumentError("no workload");
  CompareResult result;
  std::optional<Workload> workload;
  for (const std::string& policy : options.policies) {
    Progress(absl::StrCat("starting ", options.cluster.workers,
                          " workers and a router with --policy ", policy));
    absl::StatusOr<std::unique_ptr<LocalCluster>> cluster =
        LocalCluster::Start(options.cluster, policy);
    if (!cluster.ok()) return cluster.status();
    absl::StatusOr<ClusterInfo> info = QueryCluster((*cluster)->router(), absl::Seconds(30));
    if (!info.ok()) return info.status();
    if (static_cast<int>(info->worker_ids.size()) != options.cluster.workers) {
      return absl::FailedPreconditionError(absl::StrCat(
          info->worker_ids.size(), " of ", options.cluster.workers, " workers are READY"));
    }
    if (!workload) {
      absl::StatusOr<Workload> made = options.make_workload(*info);
      if (!made.ok()) return made.status();
      for (const BenchRequest& request : made->requests) {
        if (request.prompt.size() + request.max_tokens > info->max_context_tokens) {
          return absl::InvalidArgumentError(absl::StrFormat(
              "request %s needs %d tokens of context but the workers take at most %d (raise the "
              "workers' --max-context or shorten the workload)",
              request.label, request.prompt.size() + request.max_tokens, info->max_context_tokens));
        }
      }
      workload = std::move(*made);
      result.workload = workload->description;
      result.requests = workload->requests.size();
      result.block_size = info->block_size;
      result.cluster = *info;
      result.ideal = IdealHitRate(*workload, info->block_size);
      Progress(absl::StrFormat("%s; ideal hit rate %.1f%%", result.workload,
                               100 * result.ideal.hit_rate()));
    }
    RunOptions run_options = options.run;
    run_options.router = (*cluster)->router();
    run_options.router_pid = (*cluster)->router_pid();
    if (!run_options.progress_name.empty()) run_options.progress_name = "kvbench " + policy;
    absl::StatusOr<RunResult> run = RunWorkload(*workload, run_options);
    if (absl::Status stopped = (*cluster)->Stop(); !stopped.ok()) {
      Progress(absl::StrCat("stopping the cluster: ", stopped.message()));
    }
    if (!run.ok()) return run.status();
    PolicyRun policy_run;
    policy_run.summary = Summarize(policy, run->results, info->worker_ids, run->duration_s);
    policy_run.summary.router = run->router;
    if (!options.results_dir.empty()) {
      std::filesystem::create_directories(options.results_dir);
      const std::string path =
          (std::filesystem::path(options.results_dir) / ("results-" + policy + ".csv")).string();
      if (absl::Status written = WriteResults(path, run->results); !written.ok()) return written;
    }
    Progress(SummaryText(policy_run.summary));
    policy_run.run = std::move(*run);
    result.runs.push_back(std::move(policy_run));
  }
  return result;
}

std::vector<std::pair<std::string, std::string>> CompareCharts(const CompareResult& result,
                                                               const std::string& title_suffix) {
  LineChart ttft{.title = "Time to first token" + title_suffix,
                 .x_label = "TTFT (ms, log scale)",
                 .y_label = "fraction of requests",
                 .log_x = true};
  LineChart e2e{.title = "End-to-end latency" + title_suffix,
                .x_label = "E2E latency (ms, log scale)",
                .y_label = "fraction of requests",
                .log_x = true};
  BarChart hits{.title = "Prompt tokens found in the cache" + title_suffix,
                .y_label = "hit rate (%)",
                .series = {{"hit rate", {}}},
                .reference = 100 * result.ideal.hit_rate(),
                .reference_label = absl::StrFormat("ideal (unlimited shared cache) %.1f%%",
                                                   100 * result.ideal.hit_rate())};
  BarChart load{.title = "Requests per worker" + title_suffix,
                .y_label = "requests",
                .x_label = "worker (in worker_id order)"};
  for (const PolicyRun& run : result.runs) {
    ttft.series.push_back(LatencyCdf(run.summary.name, run.run.results, &RequestResult::ttft_ms));
    e2e.series.push_back(LatencyCdf(run.summary.name, run.run.results, &RequestResult::e2e_ms));
    hits.categories.push_back(run.summary.name);
    hits.series[0].values.push_back(100 * run.summary.hit_rate);
    BarSeries per_worker{run.summary.name, {}};
    for (const WorkerShare& w : run.summary.workers) {
      per_worker.values.push_back(static_cast<double>(w.requests));
    }
    load.series.push_back(std::move(per_worker));
  }
  if (!result.runs.empty()) {
    for (size_t i = 0; i < result.runs.front().summary.workers.size(); ++i) {
      load.categories.push_back(absl::StrCat(i));
    }
  }
  return {{"ttft_cdf.svg", RenderSvg(ttft)},
          {"e2e_cdf.svg", RenderSvg(e2e)},
          {"hit_rate.svg", RenderSvg(hits)},
          {"load.svg", RenderSvg(load)}};
}

std::string CompareMarkdown(const CompareResult& result, const std::string& svg_prefix) {
  std::string out = absl::StrFormat(
      "Workload: %s  \nCluster: %d %s workers (model %s, %d-token blocks), a fresh cluster per "
      "policy  \nIdeal hit rate (one unlimited cache shared by every worker, same block "
      "units): %.1f%%\n\n",
      result.workload, result.cluster.worker_ids.size(), result.cluster.backend,
      result.cluster.model_name, result.block_size, 100 * result.ideal.hit_rate());
  std::vector<Summary> summaries;
  for (const PolicyRun& run : result.runs) summaries.push_back(run.summary);
  out += MarkdownTable(summaries);
  const Summary* kv = Find(result, "kv");
  if (kv != nullptr) {
    out += "\n";
    for (const PolicyRun& run : result.runs) {
      if (&run.summary == kv || run.summary.ttft_p50_ms <= 0 || kv->ttft_p50_ms <= 0) continue;
      absl::StrAppendFormat(&out, "- kv vs %s: TTFT p50 %.2fx lower, hit rate %.1f%% vs %.1f%%\n",
                            run.summary.name, run.summary.ttft_p50_ms / kv->ttft_p50_ms,
                            100 * kv->hit_rate, 100 * run.summary.hit_rate);
    }
    if (result.ideal.hit_rate() > 0) {
      absl::StrAppendFormat(&out, "- kv hit rate is %.1f%% of the ideal\n",
                            100 * kv->hit_rate / result.ideal.hit_rate());
    }
  }
  if (!svg_prefix.empty()) {
    out += "\n";
    for (const auto& [name, title] :
         std::vector<std::pair<std::string, std::string>>{{"ttft_cdf", "TTFT CDF"},
                                                          {"e2e_cdf", "E2E latency CDF"},
                                                          {"hit_rate", "hit rate per policy"},
                                                          {"load", "requests per worker"}}) {
      absl::StrAppend(&out, "![", title, "](", svg_prefix, name, ".svg)\n");
    }
  }
  return out;
}

absl::Status WriteCompareReport(const CompareResult& result, const std::string& dir) {
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) return absl::InternalError(absl::StrCat("cannot create ", dir, ": ", error.message()));
  const std::filesystem::path base(dir);
  if (absl::Status s = WriteFile((base / "report.md").string(),
                                 "# kvbench compare\n\n" + CompareMarkdown(result, "./"));
      !s.ok()) {
    return s;
  }
  nlohmann::json json = {{"workload", result.workload},
                         {"requests", result.requests},
                         {"block_size", result.block_size},
                         {"hit_rate_ideal", result.ideal.hit_rate()},
                         {"policies", nlohmann::json::array()}};
  for (const PolicyRun& run : result.runs) json["policies"].push_back(SummaryJson(run.summary));
  if (absl::Status s = WriteFile((base / "summary.json").string(), json.dump(2) + "\n"); !s.ok()) {
    return s;
  }
  for (const auto& [name, svg] : CompareCharts(result, "")) {
    if (absl::Status s = WriteFile((base / name).string(), svg); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace kvc::kvbench
