#include "worker/backend/sim/cost_model.h"

#include <gtest/gtest.h>

#include <fstream>

#include "absl/strings/match.h"
#include "worker/model/presets.h"

namespace kvc::backend::sim {
namespace {

double Ms(absl::Duration d) { return absl::ToDoubleMilliseconds(d); }

StepShape Decode(int64_t batch, int64_t context) {
  return StepShape{.decode_sequences = batch,
                   .sequences = batch,
                   .kv_tokens_read = batch * context,
                   .attention_pairs = batch * context};
}

StepShape Prefill(int64_t tokens, int64_t cached = 0) {
  const int64_t context = cached + tokens;
  return StepShape{.prefill_tokens = tokens,
                   .sequences = 1,
                   .kv_tokens_read = context,
                   .attention_pairs = tokens * context - tokens * (tokens - 1) / 2};
}

CostModel Llama8B(const SimProfile& profile = {}) {
  return CostModel(model::Llama31_8BShapeConfig(), model::DType::kBF16, profile);
}

TEST(CostModelTest, DefaultProfileGivesTheDocumentedH100Figures) {
  const CostModel cost = Llama8B();
  // 7.5e9 parameters read per step in bf16 (layers + lm_head), 128 KiB of KV per token.
  EXPECT_NEAR(cost.weight_bytes() / 1e9, 15.01, 0.02);
  EXPECT_EQ(cost.kv_bytes_per_token(), 131072);
  // The figures cost_model.h and the README quote.
  EXPECT_NEAR(Ms(cost.StepTime(Decode(1, 1024))), 5.95, 0.05);
  EXPECT_NEAR(Ms(cost.StepTime(Prefill(2048))), 60.3, 0.1);
  EXPECT_NEAR(Ms(cost.StepTime(Decode(64, 2048))), 12.3, 0.05);
  EXPECT_NE(cost.Describe().find("h100-sxm5-bf16"), std::string::npos);
}

TEST(CostModelTest, EmptyStepCostsNothing) {
  EXPECT_EQ(Llama8B().StepTime(StepShape{}), absl::ZeroDuration());
}

TEST(CostModelTest, StepTimeIsMonotoneInPrefillTokens) {
  const CostModel cost = Llama8B();
  absl::Duration previous = absl::ZeroDuration();
  for (int64_t tokens = 2; tokens <= 8192; tokens *= 2) {
    const absl::Duration t = cost.StepTime(Prefill(tokens));
    EXPECT_GE(t, previous) << tokens;
    previous = t;
  }
  // Past the roofline's ridge every token adds compute time.
  EXPECT_GT(cost.StepTime(Prefill(4096)), cost.StepTime(Prefill(2048)) * 1.9);
  // A cached prefix makes the same new tokens attend over more keys: never cheaper.
  EXPECT_GE(cost.StepTime(Prefill(512, 4096)), cost.StepTime(Prefill(512)));
}

TEST(CostModelTest, StepTimeIsMonotoneInDecodeBatchAndKvRead) {
  const CostModel cost = Llama8B();
  absl::Duration previous = absl::ZeroDuration();
  for (int64_t batch = 1; batch <= 256; batch *= 2) {
    const absl::Duration t = cost.StepTime(Decode(batch, 1024));
    EXPECT_GT(t, previous) << batch;  // every sequence reads its own KV
    previous = t;
  }
  previous = absl::ZeroDuration();
  for (int64_t context = 16; context <= 65536; context *= 4) {
    const absl::Duration t = cost.StepTime(Decode(8, context));
    EXPECT_GT(t, previous) << context;
    previous = t;
  }
  // Decode is memory-bound: a batch of 8 costs far less than 8 single steps.
  EXPECT_LT(cost.StepTime(Decode(8, 512)), cost.StepTime(Decode(1, 512)) * 2);
}

TEST(CostModelTest, ProfileFiguresScaleTheTime) {
  SimProfile fast_memory;
  fast_memory.memory_bandwidth_gb_per_s *= 2;
  fast_memory.step_overhead_us = 0;
  SimProfile no_overhead;
  no_overhead.step_overhead_us = 0;
  // Decode is memory-bound: twice the bandwidth halves it.
  EXPECT_NEAR(Ms(Llama8B(fast_memory).StepTime(Decode(1, 1024))),
              Ms(Llama8B(no_overhead).StepTime(Decode(1, 1024))) / 2, 1e-6);
  SimProfile slow_compute = no_overhead;
  slow_compute.compute_efficiency /= 2;
  // Long prefill is compute-bound: half the efficiency doubles it.
  EXPECT_NEAR(Ms(Llama8B(slow_compute).StepTime(Prefill(4096))),
              2 * Ms(Llama8B(no_overhead).StepTime(Prefill(4096))), 1e-6);
}

TEST(CostModelTest, ShapeOfABatch) {
  ForwardBatch batch;
  const std::vector<int32_t> blocks = {0, 1, 2, 3, 4, 5, 6, 7};
  batch.AddSequence(std::vector<int32_t>(10, 1), 20, blocks);  // prefill chunk after 20 cached
  batch.AddSequence(std::vector<int32_t>{5}, 40, blocks);      // decode at position 40
  const StepShape shape = StepShape::Of(batch);
  EXPECT_EQ(shape.prefill_tokens, 10);
  EXPECT_EQ(shape.decode_sequences, 1);
  EXPECT_EQ(shape.sequences, 2);
  EXPECT_EQ(shape.kv_tokens_read, 30 + 41);
  EXPECT_EQ(shape.attention_pairs, (21 + 22 + 23 + 24 + 25 + 26 + 27 + 28 + 29 + 30) + 41);
}

TEST(SimProfileTest, ParsesAFullProfile) {
  auto profile = ParseSimProfile(R"({"name": "a100-sxm4-bf16",
      "memory_bandwidth_gb_per_s": 2039, "memory_efficiency": 0.77, "peak_tflops": 312,
      "compute_efficiency": 0.55, "step_overhead_us": 400})");
  ASSERT_TRUE(profile.ok()) << profile.status();
  EXPECT_EQ(profile->name, "a100-sxm4-bf16");
  EXPECT_EQ(profile->memory_bandwidth_gb_per_s, 2039);
  EXPECT_EQ(profile->memory_efficiency, 0.77);
  EXPECT_EQ(profile->peak_tflops, 312);
  EXPECT_EQ(profile->compute_efficiency, 0.55);
  EXPECT_EQ(profile->step_overhead_us, 400);
}

TEST(SimProfileTest, MissingFieldsKeepTheDefaults) {
  auto profile = ParseSimProfile(R"({"step_overhead_us": 0})");
  ASSERT_TRUE(profile.ok()) << profile.status();
  EXPECT_EQ(profile->step_overhead_us, 0);
  EXPECT_EQ(profile->memory_bandwidth_gb_per_s, SimProfile().memory_bandwidth_gb_per_s);
  EXPECT_EQ(profile->name, SimProfile().name);
}

TEST(SimProfileTest, BadProfilesGetPreciseErrors) {
  struct Case {
    const char* json;
    const char* expected;  // part of the message
  };
  const Case cases[] = {
      {R"({"peak_tflops": 989,)", "bad JSON at byte"},
      {R"([1, 2])", "expected a JSON object"},
      {R"({"memory_bandwith_gb_per_s": 3000})", "unknown field \"memory_bandwith_gb_per_s\""},
      {R"({"peak_tflops": "989"})", "\"peak_tflops\" must be a number"},
      {R"({"name": 3})", "\"name\" must be a string"},
      {R"({"memory_efficiency": 1.5})", "\"memory_efficiency\" is 1.5, outside (0, 1]"},
      {R"({"compute_efficiency": 0})", "\"compute_efficiency\" is 0"},
      {R"({"memory_bandwidth_gb_per_s": -1})", "\"memory_bandwidth_gb_per_s\" is -1"},
      {R"({"step_overhead_us": -5})", "\"step_overhead_us\" is -5, outside [0,"},
  };
  for (const Case& c : cases) {
    auto profile = ParseSimProfile(c.json);
    ASSERT_FALSE(profile.ok()) << c.json;
    EXPECT_EQ(profile.status().code(), absl::StatusCode::kInvalidArgument) << c.json;
    EXPECT_NE(profile.status().message().find(c.expected), std::string::npos)
        << c.json << " -> " << profile.status().message();
  }
}

TEST(SimProfileTest, LoadsAFileAndNamesItInErrors) {
  const std::string dir = ::testing::TempDir();
  const std::string good = dir + "/sim_profile_good.json";
  const std::string bad = dir + "/sim_profile_bad.json";
  std::ofstream(good) << R"({"name": "test", "peak_tflops": 500})";
  std::ofstream(bad) << R"({"peak_tflops": 0})";
  auto loaded = LoadSimProfile(good);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->peak_tflops, 500);
  auto refused = LoadSimProfile(bad);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(refused.status().message(), bad)) << refused.status();
  auto missing = LoadSimProfile(dir + "/no_such_profile.json");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace kvc::backend::sim
