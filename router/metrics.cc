#include "router/metrics.h"

#include "absl/strings/str_cat.h"

namespace kvc::router {

namespace pb = ::kvcluster::v1;

namespace {

std::string Escape(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

// One metric family: HELP, TYPE, then a sample per worker and the total.
template <typename Get>
void Family(std::string* out, const std::string& name, const char* type, const char* help,
            const pb::StatsResponse& stats, Get get) {
  absl::StrAppend(out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
  for (const pb::WorkerStats& w : stats.workers()) {
    absl::StrAppend(out, name, "{worker=\"", Escape(w.worker_id()), "\",address=\"",
                    Escape(w.address()), "\"} ", get(w), "\n");
  }
  absl::StrAppend(out, name, "{worker=\"total\"} ", get(stats.total()), "\n");
}

}  // namespace

std::string PrometheusText(const pb::StatsResponse& stats, const pb::ListWorkersResponse& workers) {
  std::string out;
  using W = const pb::WorkerStats&;
  Family(&out, "kvc_router_requests_total", "counter", "Requests routed to the worker.", stats,
         [](W w) { return w.requests(); });
  Family(&out, "kvc_router_failed_requests_total", "counter", "Requests that failed on the worker.",
         stats, [](W w) { return w.failed_requests(); });
  Family(&out, "kvc_router_prompt_tokens_total", "counter", "Prompt tokens routed.", stats,
         [](W w) { return w.prompt_tokens(); });
  Family(&out, "kvc_router_predicted_cached_tokens_total", "counter",
         "Prompt tokens the index predicted cached.", stats,
         [](W w) { return w.predicted_cached_tokens(); });
  Family(&out, "kvc_router_actual_cached_tokens_total", "counter",
         "Prompt tokens the workers reported cached.", stats,
         [](W w) { return w.actual_cached_tokens(); });
  Family(&out, "kvc_router_hit_rate", "gauge", "Actual cached / prompt tokens.", stats,
         [](W w) { return w.hit_rate(); });
  Family(&out, "kvc_router_routing_accuracy", "gauge",
         "Share of requests whose predicted cached tokens equalled the actual.", stats,
         [](W w) { return w.routing_accuracy(); });
  Family(&out, "kvc_router_active_requests", "gauge", "Requests in flight.", stats,
         [](W w) { return w.active_requests(); });
  Family(&out, "kvc_router_indexed_blocks", "gauge", "KV blocks in the index.", stats,
         [](W w) { return w.indexed_blocks(); });
  Family(&out, "kvc_router_event_lag_seconds", "gauge", "Age of the last applied KV event batch.",
         stats, [](W w) { return w.event_lag_seconds(); });
  Family(&out, "kvc_router_resyncs_total", "counter", "Event-stream resynchronisations.", stats,
         [](W w) { return w.resyncs(); });
  Family(&out, "kvc_router_digest_mismatches_total", "counter",
         "Heartbeats whose digest disagreed with the index.", stats,
         [](W w) { return w.digest_mismatches(); });
  Family(&out, "kvc_router_event_gaps_total", "counter", "Gaps in event numbering.", stats,
         [](W w) { return w.event_gaps(); });
  Family(&out, "kvc_router_epoch_changes_total", "counter", "Worker restarts seen.", stats,
         [](W w) { return w.epoch_changes(); });
  Family(&out, "kvc_router_orphan_events_total", "counter",
         "Events that did not fit the index (lost events).", stats,
         [](W w) { return w.orphan_events(); });
  absl::StrAppend(&out,
                  "# HELP kvc_router_worker_ready 1 when the worker gets traffic.\n"
                  "# TYPE kvc_router_worker_ready gauge\n");
  for (const pb::WorkerStatus& w : workers.workers()) {
    absl::StrAppend(&out, "kvc_router_worker_ready{address=\"", Escape(w.address()), "\",state=\"",
                    pb::WorkerState_Name(w.state()), "\"} ",
                    w.state() == pb::WORKER_STATE_READY ? 1 : 0, "\n");
  }
  absl::StrAppend(&out,
                  "# HELP kvc_router_index_memory_bytes Memory of the prefix index.\n"
                  "# TYPE kvc_router_index_memory_bytes gauge\n"
                  "kvc_router_index_memory_bytes ",
                  stats.index().memory_bytes(),
                  "\n# HELP kvc_router_index_blocks Distinct blocks in the prefix index.\n"
                  "# TYPE kvc_router_index_blocks gauge\nkvc_router_index_blocks ",
                  stats.index().blocks(), "\n");
  return out;
}

}  // namespace kvc::router
