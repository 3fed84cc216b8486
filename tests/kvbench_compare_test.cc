// kvbench compare end to end: real kvc-router and kvc-worker processes (the sim backend: the
// real engine, cache and KV events without the math) started through scripts/cluster, a
// shared-prefix workload sent under the kv and round-robin policies, and the report it writes. kv
// routing must find more of the prompts in the cache than round-robin: each group's system prompt
// is computed once instead of on every worker, and a user's next turn goes where the previous one
// is cached.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "nlohmann/json.hpp"
#include "tests/util/process.h"

namespace kvc {
namespace {

TEST(KvbenchCompareTest, KvRoutingFindsMoreCachedTokensThanRoundRobin) {
  testing::TempDir dir;
  const std::string model = dir.path() + "/tiny";
  auto made = testing::Run({testing::BinDir() + "/kvc-make-model", "--out", model, "--quiet"},
                           dir.path() + "/make.log");
  ASSERT_TRUE(made.ok() && *made == 0) << testing::ReadFile(dir.path() + "/make.log");

  const std::string report = dir.path() + "/report";
  const std::string log = dir.path() + "/kvbench.log";
  auto ran = testing::Run(
      {testing::BinDir() + "/kvbench", "compare", "--policies=kv,round-robin", "--workers=4",
       "--model=" + model, "--worker-flags=--threads=1", "--run-dir=" + dir.path() + "/run",
       "--report-dir=" + report, "--workload=shared-prefix", "--groups=24", "--users=4",
       "--turns=3", "--system-tokens=256", "--question-tokens=32", "--output-tokens=4",
       "--concurrency=2", "--quiet"},
      log, absl::Seconds(180));
  ASSERT_TRUE(ran.ok()) << ran.status() << "\n" << testing::ReadFile(log);
  ASSERT_EQ(*ran, 0) << testing::ReadFile(log);

  std::ifstream in(report + "/summary.json");
  const nlohmann::json summary = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(summary.is_discarded()) << testing::ReadFile(report + "/summary.json");
  ASSERT_EQ(summary["policies"].size(), 2u);
  const nlohmann::json& kv = summary["policies"][0];
  const nlohmann::json& rr = summary["policies"][1];
  EXPECT_EQ(kv["name"], "kv");
  EXPECT_EQ(rr["name"], "round-robin");
  for (const nlohmann::json* run : {&kv, &rr}) {
    EXPECT_EQ((*run)["requests"], 24 * 4 * 3);
    EXPECT_EQ((*run)["failed"], 0);
    EXPECT_EQ((*run)["workers"].size(), 4u);
  }
  // Round-robin spreads each group over all four workers: every system prompt is computed
  // about four times, and a user's history is on the worker of their last turn only by luck.
  const double ideal = summary["hit_rate_ideal"];
  const double kv_hits = kv["hit_rate"], rr_hits = rr["hit_rate"];
  EXPECT_GT(kv_hits, rr_hits + 0.05) << "kv " << kv_hits << ", round-robin " << rr_hits;
  EXPECT_LE(kv_hits, ideal + 1e-9);
  EXPECT_EQ(rr["max_mean_requests"], 1.0);
  // The report, the per-request results and the charts are written.
  for (const char* file : {"report.md", "results-kv.csv", "results-round-robin.csv", "ttft_cdf.svg",
                           "e2e_cdf.svg", "hit_rate.svg", "load.svg"}) {
    EXPECT_TRUE(std::filesystem::exists(report + "/" + file)) << file;
  }
  // Nothing of the clusters is left running: scripts/cluster removed every pid file.
  for (const auto& entry : std::filesystem::directory_iterator(dir.path() + "/run")) {
    EXPECT_NE(entry.path().extension(), ".pid") << entry.path();
  }
}

}  // namespace
}  // namespace kvc
