// kvbench: load generator and trace replay for a kvcluster router.
//
//   kvbench run [--router HOST:PORT] WORKLOAD [--concurrency N] [--results FILE] ...
//   kvbench compare WORKLOAD [--policies kv,round-robin,...] [--workers N] [--backend B]
//                   [--report-dir DIR] ...
//   kvbench ideal WORKLOAD [--block-size 16]
//
// WORKLOAD is a Mooncake trace (--workload mooncake, the default: --trace FILE replayed on its
// timestamps at --speed, sliced with --trace-requests / --trace-start-s / --trace-window-s)
// or synthetic chats (--workload shared-prefix: --groups x --users x --turns, --system-tokens,
// --question-tokens, --output-tokens, open loop at --rate or closed loop at --concurrency).
// `kvbench --help` lists every flag.
#include <signal.h>
#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/flags.h"
#include "common/process_setup.h"
#include "tools/kvbench/compare.h"
#include "tools/kvbench/report.h"
#include "tools/kvbench/runner.h"
#include "tools/kvbench/workload.h"

// The workload.
ABSL_FLAG(std::string, workload, "mooncake", "Workload: mooncake (a trace) or shared-prefix.");
ABSL_FLAG(std::string, trace, "../shared/data/mooncake/conversation_trace.jsonl",
          "mooncake: the JSONL trace (timestamp ms, input_length, output_length, hash_ids).");
ABSL_FLAG(int64_t, trace_requests, 0, "mooncake: keep only the first N requests (0: all).");
ABSL_FLAG(double, trace_start_s, 0, "mooncake: skip records before this trace time (seconds).");
ABSL_FLAG(double, trace_window_s, 0,
          "mooncake: keep records within this many seconds from --trace-start-s (0: to the end).");
ABSL_FLAG(double, speed, 1.0,
          "mooncake: replay speed; timestamps are divided by it (2: twice the arrival rate).");
ABSL_FLAG(int32_t, max_output_tokens, 0,
          "mooncake: cap every request's output_length at this (0: no cap).");
ABSL_FLAG(int32_t, groups, 4, "shared-prefix: groups, each with its own system prompt.");
ABSL_FLAG(int32_t, users, 8, "shared-prefix: users per group.");
ABSL_FLAG(int32_t, turns, 1,
          "shared-prefix: questions per user; turn t's prompt holds the user's questions 0..t.");
ABSL_FLAG(int32_t, system_tokens, 512, "shared-prefix: tokens of each group's system prompt.");
ABSL_FLAG(int32_t, question_tokens, 64, "shared-prefix: tokens of each question.");
ABSL_FLAG(int32_t, output_tokens, 16, "shared-prefix: tokens generated per request.");
ABSL_FLAG(double, rate, 0,
          "shared-prefix: open loop, Poisson arrivals at this many requests per second.");
ABSL_FLAG(uint64_t, seed, 1, "shared-prefix: seed of the prompts and arrival times.");
ABSL_FLAG(int32_t, vocab_size, 0,
          "Token ids are drawn below this; 0: the workers' vocabulary (ideal: 128000).");
ABSL_FLAG(int32_t, block_size, 16, "ideal: tokens per KV block (run/compare ask the workers).");
// Sending.
ABSL_FLAG(std::string, router, "", "run: router address; default $KVC_ROUTER or 127.0.0.1:50050.");
ABSL_FLAG(int32_t, concurrency, 0,
          "Closed loop with this many requests in flight, ignoring arrival times (0: open loop).");
ABSL_FLAG(int32_t, channels, 4, "gRPC connections the requests are spread over.");
ABSL_FLAG(absl::Duration, request_timeout, absl::Minutes(10), "Deadline of each request.");
ABSL_FLAG(bool, quiet, false, "No progress lines on stderr.");
ABSL_FLAG(std::string, results, "",
          "run: write per-request results here (.csv or .jsonl: index, label, ok, error, "
          "send_s, send_lag_ms, ttft_ms, tpot_ms, e2e_ms, prompt/cached/completion tokens, "
          "worker_id).");
ABSL_FLAG(std::string, summary_json, "", "run: write the summary as JSON here.");
// compare.
ABSL_FLAG(std::string, policies, "kv,round-robin,random,least-loaded",
          "compare: router policies to run, in order.");
ABSL_FLAG(int32_t, workers, 4, "compare: workers per cluster.");
ABSL_FLAG(std::string, backend, "", "compare: scripts/cluster --backend (default: its own).");
ABSL_FLAG(std::string, model, "", "compare: scripts/cluster --model DIR (default: its own).");
ABSL_FLAG(std::string, kv_cache_memory, "",
          "compare: scripts/cluster --kv-cache-memory per worker (default: its own).");
ABSL_FLAG(std::string, worker_flags, "",
          "compare: extra kvc-worker flags, space-separated (\"--sim-speedup=10 "
          "--max-context=131072\").");
ABSL_FLAG(std::string, router_flags, "", "compare: extra kvc-router flags, space-separated.");
ABSL_FLAG(std::string, run_dir, "",
          "compare: scripts/cluster's run directory (pids, logs); default a fresh temporary one, "
          "removed after a successful comparison.");
ABSL_FLAG(std::string, cluster_script, "",
          "compare: the scripts/cluster to use; default the one of kvbench's source tree.");
ABSL_FLAG(std::string, report_dir, "kvbench-report",
          "compare: write report.md, summary.json, results-POLICY.csv and the SVG charts here.");

namespace kvc::kvbench {
namespace {

[[noreturn]] void Fail(const std::string& message, int code = 1) {
  std::fprintf(stderr, "kvbench: %s\n", message.c_str());
  std::exit(code);
}

std::string RouterAddress() {
  if (!absl::GetFlag(FLAGS_router).empty()) return absl::GetFlag(FLAGS_router);
  if (const char* env = std::getenv("KVC_ROUTER"); env != nullptr && *env != '\0') return env;
  return "127.0.0.1:50050";
}

absl::StatusOr<Workload> MakeWorkload(uint32_t workers_vocab) {
  const uint32_t vocab =
      absl::GetFlag(FLAGS_vocab_size) > 0 ? absl::GetFlag(FLAGS_vocab_size) : workers_vocab;
  const std::string kind = absl::GetFlag(FLAGS_workload);
  if (kind == "mooncake") {
    if (absl::GetFlag(FLAGS_trace_requests) < 0 || absl::GetFlag(FLAGS_max_output_tokens) < 0) {
      return absl::InvalidArgumentError("--trace-requests and --max-output-tokens must be >= 0");
    }
    return MooncakeWorkload(
        {.path = absl::GetFlag(FLAGS_trace),
         .start_s = absl::GetFlag(FLAGS_trace_start_s),
         .window_s = absl::GetFlag(FLAGS_trace_window_s),
         .max_requests = static_cast<size_t>(absl::GetFlag(FLAGS_trace_requests)),
         .speed = absl::GetFlag(FLAGS_speed),
         .vocab_size = vocab,
         .max_output_tokens = static_cast<uint32_t>(absl::GetFlag(FLAGS_max_output_tokens))});
  }
  if (kind == "shared-prefix") {
    if (absl::GetFlag(FLAGS_system_tokens) < 0 || absl::GetFlag(FLAGS_question_tokens) < 0 ||
        absl::GetFlag(FLAGS_output_tokens) <= 0) {
      return absl::InvalidArgumentError(
          "--system-tokens and --question-tokens must be >= 0, --output-tokens > 0");
    }
    return SharedPrefixWorkload(
        {.groups = absl::GetFlag(FLAGS_groups),
         .users_per_group = absl::GetFlag(FLAGS_users),
         .turns = absl::GetFlag(FLAGS_turns),
         .system_tokens = static_cast<uint32_t>(absl::GetFlag(FLAGS_system_tokens)),
         .question_tokens = static_cast<uint32_t>(absl::GetFlag(FLAGS_question_tokens)),
         .output_tokens = static_cast<uint32_t>(absl::GetFlag(FLAGS_output_tokens)),
         .vocab_size = vocab,
         .seed = absl::GetFlag(FLAGS_seed),
         .rate = absl::GetFlag(FLAGS_rate)});
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown --workload '", kind, "' (mooncake, shared-prefix)"));
}

RunOptions MakeRunOptions() {
  if (absl::GetFlag(FLAGS_workload) == "shared-prefix" && absl::GetFlag(FLAGS_rate) <= 0 &&
      absl::GetFlag(FLAGS_concurrency) <= 0) {
    Fail("shared-prefix needs --rate (open loop) or --concurrency (closed loop)", 2);
  }
  if (absl::GetFlag(FLAGS_concurrency) < 0 || absl::GetFlag(FLAGS_channels) <= 0) {
    Fail("--concurrency must be >= 0 and --channels > 0", 2);
  }
  return {.concurrency = absl::GetFlag(FLAGS_concurrency),
          .channels = absl::GetFlag(FLAGS_channels),
          .request_timeout = absl::GetFlag(FLAGS_request_timeout),
          .progress_name = absl::GetFlag(FLAGS_quiet) ? "" : "kvbench"};
}

int Run() {
  const RunOptions defaults = MakeRunOptions();
  const std::string router = RouterAddress();
  absl::StatusOr<ClusterInfo> info = QueryCluster(router, absl::Seconds(10));
  if (!info.ok()) Fail(std::string(info.status().message()), 2);
  absl::StatusOr<Workload> workload = MakeWorkload(info->vocab_size);
  if (!workload.ok()) Fail(std::string(workload.status().message()), 2);
  const IdealHits ideal = IdealHitRate(*workload, info->block_size);
  if (!absl::GetFlag(FLAGS_quiet)) {
    std::fprintf(stderr, "kvbench: %s; %zu workers; ideal hit rate %.1f%%\n",
                 workload->description.c_str(), info->worker_ids.size(), 100 * ideal.hit_rate());
  }
  RunOptions options = defaults;
  options.router = router;
  absl::StatusOr<RunResult> run = RunWorkload(*workload, options);
  if (!run.ok()) Fail(std::string(run.status().message()), 2);
  Summary summary = Summarize("run", run->results, info->worker_ids, run->duration_s);
  summary.router = run->router;
  std::printf("%s", SummaryText(summary).c_str());
  std::printf("  ideal     hit rate with one unlimited shared cache %.1f%%\n",
              100 * ideal.hit_rate());
  if (!absl::GetFlag(FLAGS_results).empty()) {
    if (absl::Status s = WriteResults(absl::GetFlag(FLAGS_results), run->results); !s.ok()) {
      Fail(std::string(s.message()));
    }
  }
  if (!absl::GetFlag(FLAGS_summary_json).empty()) {
    nlohmann::json json = SummaryJson(summary);
    json["workload"] = workload->description;
    json["hit_rate_ideal"] = ideal.hit_rate();
    if (absl::Status s = WriteFile(absl::GetFlag(FLAGS_summary_json), json.dump(2) + "\n");
        !s.ok()) {
      Fail(std::string(s.message()));
    }
  }
  return summary.failed == 0 ? 0 : 1;
}

int Ideal() {
  if (absl::GetFlag(FLAGS_block_size) <= 0) Fail("--block-size must be > 0", 2);
  absl::StatusOr<Workload> workload = MakeWorkload(128000);
  if (!workload.ok()) Fail(std::string(workload.status().message()), 2);
  const IdealHits ideal = IdealHitRate(*workload, absl::GetFlag(FLAGS_block_size));
  std::printf("%s\nideal hit rate %.2f%% (%llu of %llu prompt tokens, %d-token blocks)\n",
              workload->description.c_str(), 100 * ideal.hit_rate(),
              static_cast<unsigned long long>(ideal.cached_tokens),
              static_cast<unsigned long long>(ideal.prompt_tokens),
              absl::GetFlag(FLAGS_block_size));
  return 0;
}

std::vector<std::string> SplitFlags(const std::string& text) {
  return absl::StrSplit(text, absl::ByAnyChar(" \t"), absl::SkipEmpty());
}

int Compare() {
  CompareOptions options;
  options.run = MakeRunOptions();
  options.policies = absl::StrSplit(absl::GetFlag(FLAGS_policies), ',', absl::SkipEmpty());
  if (absl::GetFlag(FLAGS_workers) <= 0) Fail("--workers must be > 0", 2);
  ClusterOptions& cluster = options.cluster;
  cluster.script = absl::GetFlag(FLAGS_cluster_script).empty()
                       ? DefaultClusterScript()
                       : absl::GetFlag(FLAGS_cluster_script);
  cluster.workers = absl::GetFlag(FLAGS_workers);
  cluster.backend = absl::GetFlag(FLAGS_backend);
  cluster.model = absl::GetFlag(FLAGS_model);
  cluster.kv_cache_memory = absl::GetFlag(FLAGS_kv_cache_memory);
  cluster.worker_flags = SplitFlags(absl::GetFlag(FLAGS_worker_flags));
  cluster.router_flags = SplitFlags(absl::GetFlag(FLAGS_router_flags));
  const bool temporary_run_dir = absl::GetFlag(FLAGS_run_dir).empty();
  cluster.run_dir = absl::GetFlag(FLAGS_run_dir);
  if (temporary_run_dir) {
    std::string pattern = (std::filesystem::temp_directory_path() / "kvbench-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) Fail("cannot create a temporary directory");
    cluster.run_dir = pattern;
  }
  const std::string report_dir = absl::GetFlag(FLAGS_report_dir);
  options.results_dir = report_dir;
  options.make_workload = [](const ClusterInfo& info) { return MakeWorkload(info.vocab_size); };

  // Ctrl-C or SIGTERM stops the cluster before kvbench exits; nothing is left running.
  const std::string script = cluster.script, run_dir = cluster.run_dir;
  std::thread([script, run_dir] {
    const int signal_number = WaitForTerminationSignal();
    std::fprintf(stderr, "\nkvbench: signal %d, stopping the cluster in %s\n", signal_number,
                 run_dir.c_str());
    (void)StopClusterAt(script, run_dir);
    std::_Exit(128 + signal_number);
  }).detach();

  absl::StatusOr<CompareResult> result = RunCompare(options);
  if (!result.ok()) {
    Fail(absl::StrCat(result.status().message(), " (logs in ", run_dir, ")"));
  }
  if (absl::Status s = WriteCompareReport(*result, report_dir); !s.ok()) {
    Fail(std::string(s.message()));
  }
  std::printf("%s\n", CompareMarkdown(*result, "").c_str());
  std::printf("report, results and charts in %s/\n", report_dir.c_str());
  if (temporary_run_dir) {
    std::error_code ignored;
    std::filesystem::remove_all(run_dir, ignored);
  }
  return 0;
}

int Main(int argc, char** argv) {
  // SIGINT and SIGTERM are taken by a thread of compare's (see Compare); block them before
  // any thread starts so that none of gRPC's threads receives them.
  PrepareServerProcess();
  NormalizeFlagNames(argc, argv);
  absl::SetProgramUsageMessage(
      "Load generator and trace replay for a kvcluster router.\n"
      "  kvbench run [--router HOST:PORT] WORKLOAD [--concurrency N] [--results FILE.csv]\n"
      "  kvbench compare WORKLOAD [--policies kv,round-robin,random,least-loaded] [--workers N]\n"
      "                  [--backend B] [--model DIR] [--worker-flags \"...\"] [--report-dir DIR]\n"
      "  kvbench ideal WORKLOAD [--block-size 16]\n"
      "WORKLOAD: --workload mooncake [--trace FILE] [--trace-requests N] [--speed X] ...\n"
      "       or --workload shared-prefix [--groups G --users U --turns T] (--rate R | "
      "--concurrency C)");
  const std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() != 2) Fail("give one command: run, compare or ideal (kvbench --help)", 2);
  // scripts/cluster takes its programs from KVC_BUILD_DIR: those built beside kvbench.
  if (const std::string build = OwnBuildDir(); !build.empty()) {
    setenv("KVC_BUILD_DIR", build.c_str(), /*overwrite=*/0);
  }
  const std::string command = args[1];
  if (command == "run") {
    // Interrupting a plain run needs no cleanup: let the signals act as usual again.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_UNBLOCK, &signals, nullptr);
    return Run();
  }
  if (command == "compare") return Compare();
  if (command == "ideal") return Ideal();
  Fail(absl::StrCat("unknown command '", command, "' (run, compare, ideal)"), 2);
}

}  // namespace
}  // namespace kvc::kvbench

int main(int argc, char** argv) { return kvc::kvbench::Main(argc, argv); }
