// Unit tests of kvbench's parts that need no cluster: workloads, the ideal hit rate, the
// summary math and the report writers. tests/kvbench_test.cc runs kvbench against a cluster.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "tools/kvbench/report.h"
#include "tools/kvbench/stats.h"
#include "tools/kvbench/svg.h"
#include "tools/kvbench/workload.h"

namespace kvc::kvbench {
namespace {

size_t Count(const std::string& text, const std::string& needle) {
  size_t count = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) {
    ++count;
  }
  return count;
}

TEST(PercentileTest, InterpolatesBetweenClosestRanks) {
  const std::vector<double> values = {5, 1, 4, 2, 3};
  EXPECT_DOUBLE_EQ(Percentile(values, 0), 1);
  EXPECT_DOUBLE_EQ(Percentile(values, 50), 3);
  EXPECT_DOUBLE_EQ(Percentile(values, 90), 4.6);
  EXPECT_DOUBLE_EQ(Percentile(values, 100), 5);
  EXPECT_DOUBLE_EQ(Percentile({7}, 99), 7);
  EXPECT_DOUBLE_EQ(Percentile({}, 50), 0);
}

RequestResult Ok(double ttft, double e2e, uint32_t prompt, uint32_t cached, std::string worker) {
  RequestResult r;
  r.ok = true;
  r.ttft_ms = ttft;
  r.e2e_ms = e2e;
  r.tpot_ms = 2;
  r.prompt_tokens = prompt;
  r.cached_tokens = cached;
  r.completion_tokens = 4;
  r.worker_id = std::move(worker);
  return r;
}

TEST(SummaryTest, CountsOnlySuccessesAndEveryWorker) {
  std::vector<RequestResult> results = {Ok(10, 100, 100, 50, "worker-10"),
                                        Ok(20, 200, 100, 0, "worker-2"),
                                        Ok(30, 300, 200, 150, "worker-2")};
  RequestResult failed;
  failed.error = "14: no worker";
  results.push_back(failed);
  const Summary s =
      Summarize("kv", results, {"worker-2", "worker-10", "worker-3"}, /*duration_s=*/2);
  EXPECT_EQ(s.requests, 4u);
  EXPECT_EQ(s.failed, 1u);
  EXPECT_DOUBLE_EQ(s.ttft_p50_ms, 20);
  EXPECT_DOUBLE_EQ(s.ttft_mean_ms, 20);
  EXPECT_DOUBLE_EQ(s.e2e_p99_ms, 298);
  EXPECT_DOUBLE_EQ(s.requests_per_s, 1.5);
  EXPECT_DOUBLE_EQ(s.output_tokens_per_s, 6);
  EXPECT_EQ(s.prompt_tokens, 400u);
  EXPECT_EQ(s.cached_tokens, 200u);
  EXPECT_DOUBLE_EQ(s.hit_rate, 0.5);
  // Three workers (one idle), in natural order; the busiest has 2 of a mean of 1.
  ASSERT_EQ(s.workers.size(), 3u);
  EXPECT_EQ(s.workers[0].worker_id, "worker-2");
  EXPECT_EQ(s.workers[1].worker_id, "worker-3");
  EXPECT_EQ(s.workers[2].worker_id, "worker-10");
  EXPECT_EQ(s.workers[0].requests, 2u);
  EXPECT_EQ(s.workers[0].prefill_tokens, 150u);
  EXPECT_EQ(s.workers[1].requests, 0u);
  EXPECT_DOUBLE_EQ(s.max_mean_requests, 2.0);
  EXPECT_DOUBLE_EQ(s.max_mean_prefill, 150.0 / (200.0 / 3));
}

TEST(SummaryTest, CdfEndsAtOne) {
  const auto cdf = Cdf({3, 1, 2, 2});
  ASSERT_EQ(cdf.size(), 4u);
  EXPECT_EQ(cdf.front(), std::make_pair(1.0, 0.25));
  EXPECT_EQ(cdf.back(), std::make_pair(3.0, 1.0));
}

TEST(SharedPrefixTest, GroupsShareSystemPromptsAndUsersTheirHistory) {
  SharedPrefixOptions options{.groups = 3,
                              .users_per_group = 4,
                              .turns = 2,
                              .system_tokens = 48,
                              .question_tokens = 10,
                              .output_tokens = 5,
                              .vocab_size = 100,
                              .seed = 7,
                              .rate = 50};
  auto workload = SharedPrefixWorkload(options);
  ASSERT_TRUE(workload.ok()) << workload.status();
  ASSERT_EQ(workload->requests.size(), 3u * 4 * 2);
  std::map<std::string, const BenchRequest*> by_label;
  double previous = 0;
  for (size_t i = 0; i < workload->requests.size(); ++i) {
    const BenchRequest& r = workload->requests[i];
    by_label[r.label] = &r;
    EXPECT_EQ(r.max_tokens, 5u);
    EXPECT_GE(r.arrival_s, previous);
    previous = r.arrival_s;
    const bool second_turn = absl::EndsWith(r.label, "/1");
    EXPECT_EQ(second_turn, i >= 12) << "every first turn comes before any second turn";
    EXPECT_EQ(r.prompt.size(), 48u + (second_turn ? 20 : 10));
    for (uint32_t token : r.prompt) EXPECT_LT(token, 100u);
  }
  ASSERT_EQ(by_label.size(), workload->requests.size());
  auto prefix = [](const BenchRequest* r, size_t n) {
    return std::vector<uint32_t>(r->prompt.begin(), r->prompt.begin() + n);
  };
  EXPECT_EQ(prefix(by_label["0/0/0"], 48), prefix(by_label["0/3/0"], 48));
  EXPECT_NE(prefix(by_label["0/0/0"], 48), prefix(by_label["1/0/0"], 48));
  EXPECT_NE(by_label["0/0/0"]->prompt, by_label["0/1/0"]->prompt);
  // Turn 1 extends the same user's turn 0.
  EXPECT_EQ(prefix(by_label["2/1/1"], 58), by_label["2/1/0"]->prompt);
  // Poisson arrivals at 50/s: 23 gaps of mean 20 ms.
  EXPECT_GT(previous, 0.1);
  EXPECT_LT(previous, 2.0);
  // The same seed gives the same workload.
  auto again = SharedPrefixWorkload(options);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->requests[5].prompt, workload->requests[5].prompt);
  EXPECT_EQ(again->requests[5].arrival_s, workload->requests[5].arrival_s);
}

TEST(SharedPrefixTest, RejectsBadOptions) {
  EXPECT_EQ(SharedPrefixWorkload({.groups = 0, .vocab_size = 10}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SharedPrefixWorkload({.vocab_size = 0}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SharedPrefixWorkload({.vocab_size = 10, .rate = -1}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

class TraceFile {
 public:
  explicit TraceFile(const std::string& text)
      : path_(std::filesystem::temp_directory_path() /
              ("kvbench-trace-" + std::to_string(::getpid()) + ".jsonl")) {
    std::ofstream(path_) << text;
  }
  ~TraceFile() { std::filesystem::remove(path_); }
  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

TEST(MooncakeWorkloadTest, SlicesReplaysAtSpeedAndCapsOutput) {
  TraceFile trace(
      "{\"timestamp\": 0, \"input_length\": 600, \"output_length\": 40, \"hash_ids\": [0, 1]}\n"
      "{\"timestamp\": 1000, \"input_length\": 700, \"output_length\": 0, \"hash_ids\": [0, 2]}\n"
      "{\"timestamp\": 3000, \"input_length\": 100, \"output_length\": 9, \"hash_ids\": [3]}\n"
      "{\"timestamp\": 9000, \"input_length\": 100, \"output_length\": 9, \"hash_ids\": [4]}\n");
  auto all = MooncakeWorkload(
      {.path = trace.path(), .speed = 2, .vocab_size = 1000, .max_output_tokens = 30});
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->requests.size(), 4u);
  EXPECT_EQ(all->requests[0].prompt.size(), 600u);
  EXPECT_EQ(all->requests[0].max_tokens, 30u);  // capped
  EXPECT_EQ(all->requests[1].max_tokens, 1u);   // at least one token
  EXPECT_EQ(all->requests[2].max_tokens, 9u);
  EXPECT_DOUBLE_EQ(all->requests[1].arrival_s, 0.5);
  EXPECT_DOUBLE_EQ(all->requests[3].arrival_s, 4.5);
  EXPECT_EQ(all->requests[2].label, "trace:2");
  // Equal leading ids, equal leading tokens.
  EXPECT_TRUE(std::equal(all->requests[0].prompt.begin(), all->requests[0].prompt.begin() + 512,
                         all->requests[1].prompt.begin()));
  EXPECT_NE(all->requests[0].prompt[512], all->requests[1].prompt[512]);

  // A window from t=1 s for 5 s keeps records 1 and 2, re-timed from the first kept one.
  auto window = MooncakeWorkload(
      {.path = trace.path(), .start_s = 1, .window_s = 5, .speed = 1, .vocab_size = 1000});
  ASSERT_TRUE(window.ok()) << window.status();
  ASSERT_EQ(window->requests.size(), 2u);
  EXPECT_EQ(window->requests[0].label, "trace:1");
  EXPECT_DOUBLE_EQ(window->requests[1].arrival_s, 2.0);
  auto first = MooncakeWorkload({.path = trace.path(), .max_requests = 3, .vocab_size = 1000});
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->requests.size(), 3u);

  EXPECT_EQ(
      MooncakeWorkload({.path = trace.path(), .start_s = 100, .vocab_size = 1000}).status().code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      MooncakeWorkload({.path = trace.path() + ".absent", .vocab_size = 1000}).status().code(),
      absl::StatusCode::kNotFound);
  EXPECT_EQ(
      MooncakeWorkload({.path = trace.path(), .speed = 0, .vocab_size = 1000}).status().code(),
      absl::StatusCode::kInvalidArgument);
}

TEST(IdealHitRateTest, CountsLeadingFullBlocksSeenBeforeExceptTheLastToken) {
  std::vector<uint32_t> a(40);
  for (uint32_t i = 0; i < a.size(); ++i) a[i] = i;
  std::vector<uint32_t> b(a.begin(), a.begin() + 32);
  b.insert(b.end(), {900, 901, 902, 903, 904, 905, 906, 907});
  const std::vector<uint32_t> c(a.begin(), a.begin() + 32);
  std::vector<uint32_t> d = a;
  d[3] = 999;  // differs in the first block: nothing after it counts either
  Workload workload;
  for (const auto& prompt : {a, b, c, d}) workload.requests.push_back({.prompt = prompt});
  const IdealHits hits = IdealHitRate(workload, 16);
  EXPECT_EQ(hits.prompt_tokens, 40u + 40 + 32 + 40);
  // a: nothing seen; b: both full blocks of a; c: 32 tokens, its last block holds the last
  // token and is computed, so 16; d: none.
  EXPECT_EQ(hits.cached_tokens, 0u + 32 + 16 + 0);
  EXPECT_DOUBLE_EQ(hits.hit_rate(), 48.0 / 152);
}

TEST(SvgTest, TicksAreRoundNumbers) {
  EXPECT_EQ(NiceTicks(0, 1, 5), (std::vector<double>{0, 0.2, 0.4, 0.6000000000000001, 0.8, 1}));
  EXPECT_EQ(NiceTicks(0, 97, 5), (std::vector<double>{0, 20, 40, 60, 80}));
  EXPECT_EQ(NiceTicks(15, 45, 3), (std::vector<double>{20, 30, 40}));
  EXPECT_EQ(XmlEscape("a<b & \"c\">"), "a&lt;b &amp; &quot;c&quot;&gt;");
}

TEST(SvgTest, LineChartDrawsOneLinePerSeriesWithLegend) {
  LineChart chart{.title = "TTFT <ms>", .x_label = "ms", .y_label = "fraction", .log_x = true};
  chart.series.push_back({"kv", {{1, 0.1}, {10, 0.5}, {1000, 1}}});
  chart.series.push_back({"round-robin", {{5, 0.2}, {5000, 1}}});
  const std::string svg = RenderSvg(chart);
  EXPECT_TRUE(absl::StartsWith(svg, "<?xml"));
  EXPECT_TRUE(absl::EndsWith(svg, "</svg>\n"));
  EXPECT_EQ(Count(svg, "<polyline"), 2u);
  EXPECT_NE(svg.find("TTFT &lt;ms&gt;"), std::string::npos);
  EXPECT_NE(svg.find(">round-robin</text>"), std::string::npos);
  EXPECT_NE(svg.find(">1000</text>"), std::string::npos);  // a decade tick on the log axis
  EXPECT_EQ(Count(svg, "<text"), Count(svg, "</text>"));
}

TEST(SvgTest, BarChartDrawsABarPerCategoryAndSeries) {
  BarChart chart{.title = "hits",
                 .y_label = "%",
                 .categories = {"kv", "rr", "random"},
                 .series = {{"a", {50, 20, 10}}, {"b", {40, 30, 5}}},
                 .reference = 60,
                 .reference_label = "ideal"};
  const std::string svg = RenderSvg(chart);
  EXPECT_EQ(Count(svg, "<title>"), 6u);
  EXPECT_NE(svg.find("stroke-dasharray"), std::string::npos);
  EXPECT_NE(svg.find(">ideal</text>"), std::string::npos);
  EXPECT_EQ(Count(svg, "<rect"), 2u + 6 + 2);  // background, bars, frame and legend swatches
}

TEST(ReportTest, MarkdownTableHasOneRowPerSummary) {
  Summary kv{.name = "kv", .requests = 10, .ttft_p50_ms = 12.345, .hit_rate = 0.5};
  Summary rr{.name = "round-robin", .requests = 10, .failed = 2, .hit_rate = 0.125};
  const std::string table = MarkdownTable({kv, rr});
  const std::vector<std::string> lines = absl::StrSplit(table, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_TRUE(absl::StartsWith(lines[2], "| kv | 12.3 |"));
  EXPECT_NE(lines[2].find("| 50.0% |"), std::string::npos);
  EXPECT_NE(lines[3].find("| 12.5% |"), std::string::npos);
  EXPECT_TRUE(absl::EndsWith(lines[3], "| 2 |"));
  EXPECT_EQ(lines[0].find("router CPU"), std::string::npos);
  kv.router.measured = true;
  kv.router.cpu_cores = 0.25;
  EXPECT_NE(MarkdownTable({kv}).find("| 0.250 |"), std::string::npos);
}

TEST(ReportTest, CsvQuotesFieldsThatNeedIt) {
  RequestResult r = Ok(1.5, 2.5, 10, 5, "w,1");
  r.label = "trace:3";
  r.error = "";
  const std::string csv = ResultsCsv({r});
  const std::vector<std::string> lines = absl::StrSplit(csv, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_TRUE(absl::StartsWith(lines[0], "index,label,ok,error,"));
  EXPECT_TRUE(absl::EndsWith(lines[1], ",10,5,4,\"w,1\""));
  EXPECT_EQ(WriteResults("/tmp/results.txt", {r}).code(), absl::StatusCode::kInvalidArgument);
  const nlohmann::json json = SummaryJson(Summarize("kv", {r}, {"w,1"}, 1));
  EXPECT_EQ(json["hit_rate"], 0.5);
  EXPECT_EQ(json["workers"][0]["requests"], 1);
}

}  // namespace
}  // namespace kvc::kvbench
