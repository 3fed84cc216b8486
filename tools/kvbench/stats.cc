#include "tools/kvbench/stats.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <string_view>

namespace kvc::kvbench {
namespace {

// "worker-2" before "worker-10": runs of digits compare as numbers.
bool NaturalLess(const std::string& a, const std::string& b) {
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    if (std::isdigit(static_cast<unsigned char>(a[i])) &&
        std::isdigit(static_cast<unsigned char>(b[j]))) {
      size_t i_end = i, j_end = j;
      while (i_end < a.size() && std::isdigit(static_cast<unsigned char>(a[i_end]))) ++i_end;
      while (j_end < b.size() && std::isdigit(static_cast<unsigned char>(b[j_end]))) ++j_end;
      const std::string_view x = std::string_view(a).substr(i, i_end - i);
      const std::string_view y = std::string_view(b).substr(j, j_end - j);
      if (x.size() != y.size()) return x.size() < y.size();
      if (x != y) return x < y;
      i = i_end, j = j_end;
    } else {
      if (a[i] != b[j]) return a[i] < b[j];
      ++i, ++j;
    }
  }
  return a.size() - i < b.size() - j;
}

}  // namespace

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const double rank = std::clamp(p, 0.0, 100.0) / 100.0 * (values.size() - 1);
  const size_t below = static_cast<size_t>(std::floor(rank));
  const size_t above = std::min(below + 1, values.size() - 1);
  return values[below] + (values[above] - values[below]) * (rank - below);
}

Summary Summarize(const std::string& name, const std::vector<RequestResult>& results,
                  const std::vector<std::string>& worker_ids, double duration_s) {
  Summary summary;
  summary.name = name;
  summary.requests = results.size();
  summary.duration_s = duration_s;
  std::map<std::string, WorkerShare> shares;
  for (const std::string& id : worker_ids) shares[id].worker_id = id;
  std::vector<double> ttft, tpot, e2e;
  uint64_t output_tokens = 0;
  for (const RequestResult& result : results) {
    if (!result.ok) {
      ++summary.failed;
      continue;
    }
    ttft.push_back(result.ttft_ms);
    if (result.completion_tokens > 1) tpot.push_back(result.tpot_ms);
    e2e.push_back(result.e2e_ms);
    summary.prompt_tokens += result.prompt_tokens;
    summary.cached_tokens += result.cached_tokens;
    output_tokens += result.completion_tokens;
    WorkerShare& share = shares[result.worker_id];
    share.worker_id = result.worker_id;
    ++share.requests;
    share.prompt_tokens += result.prompt_tokens;
    share.prefill_tokens +=
        result.prompt_tokens - std::min(result.cached_tokens, result.prompt_tokens);
  }
  summary.ttft_p50_ms = Percentile(ttft, 50);
  summary.ttft_p90_ms = Percentile(ttft, 90);
  summary.ttft_p99_ms = Percentile(ttft, 99);
  for (double t : ttft) summary.ttft_mean_ms += t / ttft.size();
  summary.tpot_p50_ms = Percentile(tpot, 50);
  summary.e2e_p50_ms = Percentile(e2e, 50);
  summary.e2e_p99_ms = Percentile(e2e, 99);
  if (duration_s > 0) {
    summary.requests_per_s = e2e.size() / duration_s;
    summary.output_tokens_per_s = output_tokens / duration_s;
  }
  summary.hit_rate =
      summary.prompt_tokens ? double(summary.cached_tokens) / summary.prompt_tokens : 0;
  uint64_t total_requests = 0, total_prefill = 0, max_requests = 0, max_prefill = 0;
  for (auto& [id, share] : shares) {
    total_requests += share.requests;
    total_prefill += share.prefill_tokens;
    max_requests = std::max(max_requests, share.requests);
    max_prefill = std::max(max_prefill, share.prefill_tokens);
    summary.workers.push_back(share);
  }
  std::sort(summary.workers.begin(), summary.workers.end(),
            [](const WorkerShare& a, const WorkerShare& b) {
              return NaturalLess(a.worker_id, b.worker_id);
            });
  const double n = static_cast<double>(shares.size());
  if (total_requests > 0) summary.max_mean_requests = max_requests / (total_requests / n);
  if (total_prefill > 0) summary.max_mean_prefill = max_prefill / (total_prefill / n);
  return summary;
}

std::vector<std::pair<double, double>> Cdf(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  std::vector<std::pair<double, double>> points;
  points.reserve(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    points.emplace_back(values[i], double(i + 1) / values.size());
  }
  return points;
}

}  // namespace kvc::kvbench
