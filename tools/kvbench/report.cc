#include "tools/kvbench/report.h"

#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace kvc::kvbench {
namespace {

// A CSV field: quoted when it holds a comma, a quote or a line break.
std::string CsvField(const std::string& text) {
  if (text.find_first_of(",\"\n\r") == std::string::npos) return text;
  std::string out = "\"";
  for (char c : text) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

nlohmann::json ResultJson(const RequestResult& r) {
  return {{"index", r.index},
          {"label", r.label},
          {"ok", r.ok},
          {"error", r.error},
          {"send_s", r.send_s},
          {"send_lag_ms", r.send_lag_ms},
          {"ttft_ms", r.ttft_ms},
          {"tpot_ms", r.tpot_ms},
          {"e2e_ms", r.e2e_ms},
          {"prompt_tokens", r.prompt_tokens},
          {"cached_tokens", r.cached_tokens},
          {"completion_tokens", r.completion_tokens},
          {"worker_id", r.worker_id}};
}

}  // namespace

std::string ResultsCsv(const std::vector<RequestResult>& results) {
  std::string out =
      "index,label,ok,error,send_s,send_lag_ms,ttft_ms,tpot_ms,e2e_ms,prompt_tokens,"
      "cached_tokens,completion_tokens,worker_id\n";
  for (const RequestResult& r : results) {
    absl::StrAppendFormat(&out, "%d,%s,%d,%s,%.4f,%.3f,%.3f,%.3f,%.3f,%u,%u,%u,%s\n", r.index,
                          CsvField(r.label), r.ok ? 1 : 0, CsvField(r.error), r.send_s,
                          r.send_lag_ms, r.ttft_ms, r.tpot_ms, r.e2e_ms, r.prompt_tokens,
                          r.cached_tokens, r.completion_tokens, CsvField(r.worker_id));
  }
  return out;
}

absl::Status WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

absl::Status WriteResults(const std::string& path, const std::vector<RequestResult>& results) {
  if (absl::EndsWith(path, ".csv")) return WriteFile(path, ResultsCsv(results));
  if (absl::EndsWith(path, ".jsonl")) {
    std::string text;
    for (const RequestResult& r : results) absl::StrAppend(&text, ResultJson(r).dump(), "\n");
    return WriteFile(path, text);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("results file '", path, "' must end in .csv or .jsonl"));
}

nlohmann::json SummaryJson(const Summary& s) {
  nlohmann::json workers = nlohmann::json::array();
  for (const WorkerShare& w : s.workers) {
    workers.push_back({{"worker_id", w.worker_id},
                       {"requests", w.requests},
                       {"prompt_tokens", w.prompt_tokens},
                       {"prefill_tokens", w.prefill_tokens}});
  }
  nlohmann::json json = {{"name", s.name},
                         {"requests", s.requests},
                         {"failed", s.failed},
                         {"duration_s", s.duration_s},
                         {"ttft_p50_ms", s.ttft_p50_ms},
                         {"ttft_p90_ms", s.ttft_p90_ms},
                         {"ttft_p99_ms", s.ttft_p99_ms},
                         {"ttft_mean_ms", s.ttft_mean_ms},
                         {"tpot_p50_ms", s.tpot_p50_ms},
                         {"e2e_p50_ms", s.e2e_p50_ms},
                         {"e2e_p99_ms", s.e2e_p99_ms},
                         {"requests_per_s", s.requests_per_s},
                         {"output_tokens_per_s", s.output_tokens_per_s},
                         {"prompt_tokens", s.prompt_tokens},
                         {"cached_tokens", s.cached_tokens},
                         {"hit_rate", s.hit_rate},
                         {"max_mean_requests", s.max_mean_requests},
                         {"max_mean_prefill", s.max_mean_prefill},
                         {"workers", workers}};
  if (s.router.measured || s.router.event_lag_samples > 0) {
    json["router_cpu_seconds"] = s.router.cpu_seconds;
    json["router_cpu_cores"] = s.router.cpu_cores;
    json["event_lag_max_s"] = s.router.event_lag_max_s;
    json["event_lag_mean_s"] = s.router.event_lag_mean_s;
    json["routing_accuracy"] = s.router.routing_accuracy;
  }
  return json;
}

std::string SummaryText(const Summary& s) {
  std::string out = absl::StrFormat(
      "%s: %d requests (%d failed) in %.1f s: %.2f requests/s, %.0f output tokens/s\n"
      "  TTFT ms   p50 %.1f  p90 %.1f  p99 %.1f  mean %.1f\n"
      "  E2E ms    p50 %.1f  p99 %.1f     TPOT ms p50 %.2f\n"
      "  cache     %d of %d prompt tokens cached: hit rate %.1f%%\n"
      "  load      max/mean requests per worker %.2f, prefill tokens %.2f\n",
      s.name, s.requests, s.failed, s.duration_s, s.requests_per_s, s.output_tokens_per_s,
      s.ttft_p50_ms, s.ttft_p90_ms, s.ttft_p99_ms, s.ttft_mean_ms, s.e2e_p50_ms, s.e2e_p99_ms,
      s.tpot_p50_ms, s.cached_tokens, s.prompt_tokens, 100 * s.hit_rate, s.max_mean_requests,
      s.max_mean_prefill);
  for (const WorkerShare& w : s.workers) {
    absl::StrAppendFormat(&out, "    %-24s %6d requests %10d prompt tokens %10d prefilled\n",
                          w.worker_id, w.requests, w.prompt_tokens, w.prefill_tokens);
  }
  if (s.router.measured) {
    absl::StrAppendFormat(&out, "  router    %.2f CPU s (%.2f cores), event lag max %.3f s\n",
                          s.router.cpu_seconds, s.router.cpu_cores, s.router.event_lag_max_s);
  }
  return out;
}

std::string MarkdownTable(const std::vector<Summary>& summaries) {
  bool router = false;
  for (const Summary& s : summaries) router |= s.router.measured;
  std::string out =
      "| policy | TTFT p50 ms | TTFT p90 ms | TTFT p99 ms | E2E p50 ms | E2E p99 ms | req/s | "
      "output tok/s | hit rate | max/mean requests | max/mean prefill | failed |";
  std::string rule = "|---|---|---|---|---|---|---|---|---|---|---|---|";
  if (router) {
    out += " router CPU cores | event lag max s |";
    rule += "---|---|";
  }
  out += "\n" + rule + "\n";
  for (const Summary& s : summaries) {
    absl::StrAppendFormat(&out,
                          "| %s | %.1f | %.1f | %.1f | %.1f | %.1f | %.2f | %.0f | %.1f%% | %.2f | "
                          "%.2f | %d |",
                          s.name, s.ttft_p50_ms, s.ttft_p90_ms, s.ttft_p99_ms, s.e2e_p50_ms,
                          s.e2e_p99_ms, s.requests_per_s, s.output_tokens_per_s, 100 * s.hit_rate,
                          s.max_mean_requests, s.max_mean_prefill, s.failed);
    if (router) {
      absl::StrAppendFormat(&out, " %.3f | %.3f |", s.router.cpu_cores, s.router.event_lag_max_s);
    }
    out += "\n";
  }
  return out;
}

}  // namespace kvc::kvbench
