// kvc_bench_routing: what KV-aware routing buys on the Mooncake conversation trace, run by
// `scripts/bench routing`. Every worker is a real kvc-worker with the sim backend (the real
// engine, block manager and KV events; a GPU timing model instead of math) serving the
// Llama-3.1-8B shape; the router is the real kvc-router; kvbench replays the trace through it.
//
// 1. 8 workers, the trace's first 2000 requests, arrivals at 10x the trace's pace, the
//    simulated GPUs 2.7x faster than an H100 (so the load on the cluster is that of the trace
//    at 3.7x its rate on H100s); each worker's KV capacity holds 1/6 of the slice's distinct
//    prompt blocks, all eight together 1.35x of them. Policies kv (--overlap-weight 8),
//    round-robin, random, least-loaded, and kv with the router's default weight, each on a
//    fresh cluster. Then kv and round-robin again at a lighter load (2.5x the trace's rate).
// 2. 64 workers, the same 2000 requests at the same 10x pace but GPUs at half an H100's
//    speed: in simulated time the arrival rate is 20x the trace's, 8x that of run 1's light
//    pass, so each worker sees about the light pass's load. (Arriving faster in wall time
//    instead would make this 2-core machine, not the router, the bottleneck: every generated
//    token is a message from worker to router to kvbench.) Measured: the router's CPU (from
//    /proc/PID/stat) and the event lag (GetStats) while it routes for 64 workers.
//
//   kvc_bench_routing [--json] [--quick] [--report FILE] [--docs DIR]
// --docs DIR (default docs/ when --report is given without --quick) receives the charts in
// DIR/routing/ and the results between the markers of DIR/routing.md.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/bench_args.h"
#include "common/process_setup.h"
#include "nlohmann/json.hpp"
#include "tools/kvbench/cluster.h"
#include "tools/kvbench/compare.h"
#include "tools/kvbench/report.h"
#include "tools/kvbench/workload.h"

namespace kvc::kvbench {
namespace {

constexpr char kTrace[] = "../shared/data/mooncake/conversation_trace.jsonl";
constexpr char kDocsBegin[] = "<!-- kvbench:routing:begin -->";
constexpr char kDocsEnd[] = "<!-- kvbench:routing:end -->";
// A cached block is worth this many blocks of decode load to the kv policy in these runs.
constexpr double kOverlapWeight = 8;
// All workers together hold this many times the slice's distinct prompt tokens.
constexpr double kAggregateCapacity = 1.35;

void Progress(const std::string& message) {
  std::fprintf(stderr, "bench routing: %s\n", message.c_str());
}

[[noreturn]] void Fail(const std::string& message) {
  Progress(message);
  std::exit(1);
}

struct Model {
  std::string dir;
  uint32_t vocab_size = 0;
  uint64_t kv_bytes_per_token = 0;
};

Model MakeModel(const std::string& parent) {
  Model model;
  model.dir = parent + "/llama-3.1-8b-shape";
  absl::StatusOr<std::string> made =
      RunProgram({OwnBuildDir() + "/bin/kvc-make-model", "--preset", "llama-3.1-8b-shape",
                  "--config-only", "--out", model.dir, "--quiet"});
  if (!made.ok()) Fail(std::string(made.status().message()));
  std::ifstream in(model.dir + "/config.json");
  const nlohmann::json config = nlohmann::json::parse(in, nullptr, false);
  if (config.is_discarded()) Fail("cannot read " + model.dir + "/config.json");
  model.vocab_size = config.value("vocab_size", 0u);
  // bf16 K and V for every layer and KV head (the sim backend's KV dtype).
  model.kv_bytes_per_token = 2ull * config.value("num_hidden_layers", 0u) *
                             config.value("num_key_value_heads", 0u) *
                             config.value("head_dim", 0u) * 2;
  if (model.vocab_size == 0 || model.kv_bytes_per_token == 0) Fail("unexpected model config");
  return model;
}

Workload LoadTrace(size_t requests, double speed, uint32_t vocab_size) {
  absl::StatusOr<Workload> workload = MooncakeWorkload(
      {.path = kTrace, .max_requests = requests, .speed = speed, .vocab_size = vocab_size});
  if (!workload.ok()) Fail(std::string(workload.status().message()));
  return std::move(*workload);
}

// Per-worker --kv-cache-memory: the workers together hold kAggregateCapacity times the
// workload's distinct prompt tokens.
std::string CapacityFor(const Workload& workload, int workers, const Model& model) {
  const IdealHits ideal = IdealHitRate(workload, 16);
  const double distinct = static_cast<double>(ideal.prompt_tokens - ideal.cached_tokens);
  const uint64_t tokens = static_cast<uint64_t>(std::ceil(distinct * kAggregateCapacity / workers));
  return absl::StrCat((tokens * model.kv_bytes_per_token + (1 << 20) - 1) >> 20, "MiB");
}

struct Setup {
  std::string name;
  int workers = 8;
  std::vector<std::string> policies;
  double sim_speedup = 1;
  double overlap_weight = kOverlapWeight;
};

CompareResult RunSetup(const Setup& setup, const Workload& workload, const Model& model,
                       const std::string& run_dir, const std::string& capacity) {
  Progress(absl::StrFormat("%s: %d workers, %s of KV each, --sim-speedup %g, policies %s",
                           setup.name, setup.workers, capacity, setup.sim_speedup,
                           absl::StrJoin(setup.policies, ",")));
  CompareOptions options;
  options.policies = setup.policies;
  options.cluster = {.script = DefaultClusterScript(),
                     .run_dir = run_dir,
                     .workers = setup.workers,
                     .backend = "sim",
                     .model = model.dir,
                     .kv_cache_memory = capacity,
                     .worker_flags = {absl::StrCat("--sim-speedup=", setup.sim_speedup)},
                     .router_flags = {absl::StrCat("--overlap-weight=", setup.overlap_weight)}};
  options.make_workload = [&workload](const ClusterInfo&) -> absl::StatusOr<Workload> {
    return workload;
  };
  options.run = {.channels = 8, .progress_name = "kvbench"};
  absl::StatusOr<CompareResult> result = RunCompare(options);
  if (!result.ok()) Fail(absl::StrCat(setup.name, ": ", result.status().message()));
  return std::move(*result);
}

const Summary& Find(const CompareResult& result, const std::string& policy) {
  for (const PolicyRun& run : result.runs) {
    if (run.summary.name == policy) return run.summary;
  }
  Fail("no run of policy " + policy);
}

double Ratio(double a, double b) { return b > 0 ? a / b : 0; }

// Replaces the text between the markers of `path` (creating the file with just the markers
// when it is missing).
void SpliceDocs(const std::string& path, const std::string& section) {
  std::string text;
  if (std::ifstream in(path); in) {
    text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  const size_t begin = text.find(kDocsBegin), end = text.find(kDocsEnd);
  const std::string block = absl::StrCat(kDocsBegin, "\n", section, kDocsEnd);
  if (begin == std::string::npos || end == std::string::npos || end < begin) {
    text = absl::StrCat(text.empty() ? "# Routing on the Mooncake trace\n\n" : text, "\n", block,
                        "\n");
  } else {
    text = text.substr(0, begin) + block + text.substr(end + std::strlen(kDocsEnd));
  }
  if (absl::Status s = WriteFile(path, text); !s.ok()) Fail(std::string(s.message()));
}

int Main(int argc, char** argv) {
  PrepareServerProcess();  // SIGINT/SIGTERM: stop the running cluster first (below)
  const BenchArgs args = ParseBenchArgs(
      argc, argv, {"--docs"}, "kvc_bench_routing [--json] [--quick] [--report FILE] [--docs DIR]");
  if (!std::filesystem::exists(kTrace)) {
    Fail(absl::StrCat(kTrace,
                      " not found: this benchmark replays the Mooncake trace (run it "
                      "from the project root, beside ../shared/data)"));
  }
  // scripts/cluster takes its programs from KVC_BUILD_DIR: those built beside this one.
  setenv("KVC_BUILD_DIR", OwnBuildDir().c_str(), /*overwrite=*/0);
  const std::string docs = !args.Value("--docs").empty()
                               ? args.Value("--docs")
                               : (!args.report.empty() && !args.quick ? "docs" : "");
  std::string temp = (std::filesystem::temp_directory_path() / "kvc-bench-routing-XXXXXX").string();
  if (mkdtemp(temp.data()) == nullptr) Fail("cannot create a temporary directory");
  const std::string run_dir = temp + "/run";
  std::thread([run_dir] {
    const int signal_number = WaitForTerminationSignal();
    (void)StopClusterAt(DefaultClusterScript(), run_dir);
    std::_Exit(128 + signal_number);
  }).detach();
  const absl::Time started = absl::Now();
  const Model model = MakeModel(temp);

  // 1. Eight workers.
  const size_t requests = args.quick ? 400 : 2000;
  const Workload trace = LoadTrace(requests, 10, model.vocab_size);
  const std::string capacity = CapacityFor(trace, 8, model);
  Setup heavy{.name = "8 workers, 3.7x the trace's rate",
              .policies = args.quick ? std::vector<std::string>{"kv", "round-robin"}
                                     : std::vector<std::string>{"kv", "round-robin", "random",
                                                                "least-loaded"},
              .sim_speedup = 2.7};
  CompareResult main = RunSetup(heavy, trace, model, run_dir, capacity);
  if (!args.quick) {
    Setup default_weight = heavy;
    default_weight.name = "8 workers, kv with the router's default --overlap-weight 1";
    default_weight.policies = {"kv"};
    default_weight.overlap_weight = 1;
    CompareResult extra = RunSetup(default_weight, trace, model, run_dir, capacity);
    extra.runs[0].summary.name = "kv (weight 1)";
    main.runs.push_back(std::move(extra.runs[0]));
  }
  Setup light = heavy;
  light.name = "8 workers, 2.5x the trace's rate";
  light.policies = {"kv", "round-robin"};
  light.sim_speedup = 4;
  const CompareResult lighter = RunSetup(light, trace, model, run_dir, capacity);

  // 2. Sixty-four workers, each at about the light pass's load.
  Setup wide{.name = "64 workers", .workers = 64, .policies = {"kv"}, .sim_speedup = 0.5};
  const CompareResult sixty_four =
      RunSetup(wide, trace, model, run_dir, CapacityFor(trace, 64, model));
  std::error_code ignored;
  std::filesystem::remove_all(temp, ignored);

  const Summary& kv = Find(main, "kv");
  const Summary& rr = Find(main, "round-robin");
  const Summary& kv_64 = sixty_four.runs.front().summary;
  const double ideal = main.ideal.hit_rate();
  const double speedup_rr = Ratio(rr.ttft_p50_ms, kv.ttft_p50_ms);
  const double fraction = Ratio(kv.hit_rate, ideal);
  const double light_speedup =
      Ratio(Find(lighter, "round-robin").ttft_p50_ms, Find(lighter, "kv").ttft_p50_ms);
  const double minutes = absl::ToDoubleMinutes(absl::Now() - started);

  nlohmann::json json = {{"ttft_p50_speedup_vs_rr", speedup_rr},
                         {"hit_rate_kv", kv.hit_rate},
                         {"hit_rate_rr", rr.hit_rate},
                         {"hit_rate_ideal", ideal},
                         {"hit_rate_fraction_of_ideal", fraction},
                         {"max_mean_load_kv", kv.max_mean_requests},
                         {"ttft_p50_ms_kv", kv.ttft_p50_ms},
                         {"ttft_p50_ms_rr", rr.ttft_p50_ms},
                         {"ttft_p50_speedup_vs_rr_light_load", light_speedup},
                         {"workers_64_router_cpu_cores", kv_64.router.cpu_cores},
                         {"workers_64_event_lag_max_s", kv_64.router.event_lag_max_s},
                         {"workers_64_event_lag_mean_s", kv_64.router.event_lag_mean_s},
                         {"workers_64_hit_rate", kv_64.hit_rate},
                         {"workers_64_hit_rate_ideal", sixty_four.ideal.hit_rate()},
                         {"workers_64_requests_per_s", kv_64.requests_per_s},
                         {"minutes", minutes}};
  for (const PolicyRun& run : main.runs) {
    if (run.summary.name == "random" || run.summary.name == "least-loaded") {
      json["ttft_p50_speedup_vs_" + run.summary.name] =
          Ratio(run.summary.ttft_p50_ms, kv.ttft_p50_ms);
      json["hit_rate_" + run.summary.name] = run.summary.hit_rate;
    }
  }

  auto goal = [](bool met) { return met ? "met" : "missed"; };
  const uint64_t capacity_tokens = main.cluster.capacity_blocks * main.block_size;
  std::string section = absl::StrFormat(
      "Trace: the first %d requests of the Mooncake conversation trace (%.0f s of it), each "
      "hash id 512 pseudo-random tokens, output_length tokens generated (ignore_eos).  \n"
      "Workers: kvc-worker --backend sim (real engine, block manager and KV events; an H100 "
      "timing model) serving the Llama-3.1-8B shape, %d KV tokens each (%.0f%% of the "
      "slice's distinct prompt tokens; all eight hold %.2fx of them). kv runs with "
      "--overlap-weight %g. Latencies are wall-clock times of the sped-up simulation (times "
      "the --sim-speedup for simulated H100 time); ratios between policies do not depend on "
      "it.\n\n",
      requests, trace.requests.back().arrival_s * 10, capacity_tokens,
      100.0 * capacity_tokens / (main.ideal.prompt_tokens - main.ideal.cached_tokens),
      kAggregateCapacity, kOverlapWeight);
  absl::StrAppendFormat(&section,
                        "**8 workers at 3.7x the trace's rate** (arrivals 10x, GPUs 2.7x "
                        "faster than an H100). Ideal hit rate %.1f%%.\n\n",
                        100 * ideal);
  std::vector<Summary> rows;
  for (const PolicyRun& run : main.runs) rows.push_back(run.summary);
  section += MarkdownTable(rows);
  absl::StrAppendFormat(&section,
                        "\n| goal (kv vs round-robin) | measured | |\n|---|---|---|\n"
                        "| TTFT p50 >= 3x lower | %.2fx (%.0f vs %.0f ms) | %s |\n"
                        "| hit rate >= 90%% of ideal | %.1f%% of %.1f%% = %.1f%% | %s |\n"
                        "| max/mean load <= 1.3 | %.2f (requests per worker) | %s |\n",
                        speedup_rr, kv.ttft_p50_ms, rr.ttft_p50_ms, goal(speedup_rr >= 3),
                        100 * kv.hit_rate, 100 * ideal, 100 * fraction, goal(fraction >= 0.9),
                        kv.max_mean_requests, goal(kv.max_mean_requests <= 1.3));
  rows.clear();
  for (const PolicyRun& run : lighter.runs) rows.push_back(run.summary);
  absl::StrAppendFormat(&section,
                        "\n**8 workers at 2.5x the trace's rate** (GPUs 4x faster): kv's TTFT "
                        "p50 is %.2fx lower than round-robin's.\n\n",
                        light_speedup);
  section += MarkdownTable(rows);
  absl::StrAppendFormat(&section,
                        "\n**64 workers at 20x the trace's rate** (arrivals 10x, GPUs at half "
                        "an H100's speed: each worker at about the light pass's load), kv "
                        "policy, %d KV tokens each.\n\n",
                        sixty_four.cluster.capacity_blocks * sixty_four.block_size);
  section += MarkdownTable({kv_64});
  absl::StrAppendFormat(&section,
                        "\nRouter on 64 workers: %.2f CPU cores on average (%.1f CPU s over "
                        "%.0f s, %.0f requests/s routed); event lag max %.3f s, mean %.3f s.\n",
                        kv_64.router.cpu_cores, kv_64.router.cpu_seconds, kv_64.duration_s,
                        kv_64.requests_per_s, kv_64.router.event_lag_max_s,
                        kv_64.router.event_lag_mean_s);

  if (args.json) {
    std::printf("%s\n", json.dump(2).c_str());
  } else {
    std::printf("%s", section.c_str());
  }
  if (!args.report.empty()) {
    const std::string report = absl::StrCat(
        "## routing\n\nCommand: `scripts/bench routing", args.quick ? " --quick" : "",
        "` (build/bin/kvc_bench_routing), ", absl::StrFormat("%.1f", minutes),
        " min  \nCPU: ", CpuModelName(), ", ", std::thread::hardware_concurrency(),
        " threads shared by kvbench, the router and every worker; details and charts in "
        "[docs/routing.md](docs/routing.md)  \n",
        section);
    if (absl::Status s = WriteFile(args.report, report); !s.ok()) Fail(std::string(s.message()));
  }
  if (!docs.empty()) {
    const std::string charts = docs + "/routing";
    std::filesystem::create_directories(charts);
    for (const auto& [name, svg] : CompareCharts(main, ", 8 workers, 3.7x the trace's rate")) {
      if (absl::Status s = WriteFile(charts + "/" + name, svg); !s.ok()) {
        Fail(std::string(s.message()));
      }
    }
    SpliceDocs(docs + "/routing.md",
               absl::StrCat("\n", section, "\n", "![TTFT CDF](routing/ttft_cdf.svg)\n",
                            "![E2E CDF](routing/e2e_cdf.svg)\n",
                            "![hit rate per policy](routing/hit_rate.svg)\n",
                            "![requests per worker](routing/load.svg)\n\n"));
    Progress("charts in " + charts + "/, results in " + docs + "/routing.md");
  }
  return 0;
}

}  // namespace
}  // namespace kvc::kvbench

int main(int argc, char** argv) { return kvc::kvbench::Main(argc, argv); }
