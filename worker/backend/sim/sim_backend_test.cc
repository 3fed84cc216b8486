// The sim backend on a fake clock: each step sleeps exactly its modelled time over the
// speedup, less the host's time between back-to-back steps; synthetic tokens are
// deterministic, never EOS, and equal for equal inputs; bad input is refused.
#include "worker/backend/sim/sim_backend.h"

#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "worker/engine/engine.h"
#include "worker/model/presets.h"

namespace kvc::backend {
namespace {

class FakeClock final : public SimClock {
 public:
  absl::Duration Now() override { return now_; }
  void SleepFor(absl::Duration duration) override {
    slept_ += duration;
    ++sleeps_;
    now_ += duration + oversleep_;
  }
  void Advance(absl::Duration duration) { now_ += duration; }

  absl::Duration now_ = absl::Seconds(1000);
  absl::Duration slept_;
  absl::Duration oversleep_;  // added to every sleep, as a busy kernel does
  int sleeps_ = 0;
};

model::ModelConfig TinyWithTwoEos() {
  model::ModelConfig config = model::TinyLlamaConfig();  // vocab 512
  config.eos_token_ids = {3, 511};
  return config;
}

std::unique_ptr<Backend> MakeSim(const model::ModelConfig& config, FakeClock* clock,
                                 double speedup = 1.0) {
  SimBackendOptions options;
  options.kv_cache.num_blocks = 256;
  options.speedup = speedup;
  options.clock = clock;
  auto backend = CreateSimBackend(config, options);
  EXPECT_TRUE(backend.ok()) << backend.status();
  return backend.ok() ? std::move(*backend) : nullptr;
}

// `sequences` decoding sequences, each at position `context - 1` with last token `token`.
ForwardBatch DecodeBatch(int sequences, int context, int32_t token = 7, bool follows = false) {
  ForwardBatch batch;
  std::vector<int32_t> blocks;
  for (int b = 0; b < (context + 15) / 16; ++b) blocks.push_back(b);
  for (int s = 0; s < sequences; ++s)
    batch.AddSequence(std::vector<int32_t>{token}, context - 1, blocks);
  batch.follows_previous_step = follows;
  return batch;
}

std::vector<TokenSampling> Greedy(int sequences) {
  return std::vector<TokenSampling>(sequences, TokenSampling{.sample = true});
}

absl::Duration Cost(const ForwardBatch& batch, double speedup = 1.0) {
  const sim::CostModel cost(model::Llama31_8BShapeConfig(), model::DType::kBF16, {});
  return cost.StepTime(sim::StepShape::Of(batch)) / speedup;
}

TEST(SimBackendTest, StepSleepsTheModelledTimeOverTheSpeedup) {
  FakeClock clock;
  auto backend = MakeSim(model::Llama31_8BShapeConfig(), &clock, /*speedup=*/4);
  const ForwardBatch batch = DecodeBatch(8, 1000);
  SampledTokens out;
  ASSERT_TRUE(backend->ForwardAndSample(batch, Greedy(8), &out).ok());
  EXPECT_EQ(clock.slept_, Cost(batch, 4));
  EXPECT_GT(clock.slept_, absl::Milliseconds(1));  // ~1.6 ms: an 8B decode step / 4
  EXPECT_EQ(out.token_ids.size(), 8u);
}

TEST(SimBackendTest, HostTimeBetweenBackToBackStepsIsTakenOutOfTheSleep) {
  FakeClock clock;
  auto backend = MakeSim(model::Llama31_8BShapeConfig(), &clock);
  SampledTokens out;
  const absl::Duration cost = Cost(DecodeBatch(1, 100));
  ASSERT_TRUE(backend->ForwardAndSample(DecodeBatch(1, 100), Greedy(1), &out).ok());
  EXPECT_EQ(clock.slept_, cost);

  // The engine spends a quarter of a step on its bookkeeping, then goes straight on.
  clock.Advance(cost / 4);
  clock.slept_ = absl::ZeroDuration();
  ASSERT_TRUE(
      backend->ForwardAndSample(DecodeBatch(1, 100, 7, /*follows=*/true), Greedy(1), &out).ok());
  EXPECT_EQ(clock.slept_, cost - cost / 4);

  // Bookkeeping of two steps' time: the next step runs at once and so does the one after it
  // (the lateness is paid back); the third sleeps a whole step again.
  clock.Advance(cost * 2);
  const int sleeps = clock.sleeps_;
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(backend->ForwardAndSample(DecodeBatch(1, 100, 7, true), Greedy(1), &out).ok());
  }
  EXPECT_EQ(clock.sleeps_, sleeps);
  clock.slept_ = absl::ZeroDuration();
  ASSERT_TRUE(backend->ForwardAndSample(DecodeBatch(1, 100, 7, true), Greedy(1), &out).ok());
  EXPECT_EQ(clock.slept_, cost);
}

TEST(SimBackendTest, AStepAfterIdlingStartsWhenCalled) {
  FakeClock clock;
  auto backend = MakeSim(model::Llama31_8BShapeConfig(), &clock);
  SampledTokens out;
  ASSERT_TRUE(backend->ForwardAndSample(DecodeBatch(1, 100), Greedy(1), &out).ok());
  clock.Advance(absl::Milliseconds(3));  // idle: shorter than a step, yet not the step's time
  clock.slept_ = absl::ZeroDuration();
  ASSERT_TRUE(backend->ForwardAndSample(DecodeBatch(1, 100), Greedy(1), &out).ok());
  EXPECT_EQ(clock.slept_, Cost(DecodeBatch(1, 100)));
}

TEST(SimBackendTest, OversleepIsTakenFromTheNextStep) {
  FakeClock clock;
  clock.oversleep_ = absl::Microseconds(200);
  auto backend = MakeSim(model::Llama31_8BShapeConfig(), &clock, /*speedup=*/10);
  const absl::Duration cost = Cost(DecodeBatch(1, 100), 10);  // ~0.6 ms
  SampledTokens out;
  const absl::Duration start = clock.Now();
  ASSERT_TRUE(backend->ForwardAndSample(DecodeBatch(1, 100), Greedy(1), &out).ok());
  for (int i = 0; i < 99; ++i) {
    ASSERT_TRUE(backend->ForwardAndSample(DecodeBatch(1, 100, 7, true), Greedy(1), &out).ok());
  }
  // 100 steps take 100 modelled steps, plus at most the last oversleep.
  EXPECT_LE(clock.Now() - start, cost * 100 + clock.oversleep_);
  EXPECT_GE(clock.Now() - start, cost * 100);
}

TEST(SimBackendTest, CarriedLatenessIsCapped) {
  FakeClock clock;
  auto backend = MakeSim(model::Llama31_8BShapeConfig(), &clock);
  SampledTokens out;
  ASSERT_TRUE(backend->ForwardAndSample(DecodeBatch(1, 100), Greedy(1), &out).ok());
  clock.Advance(absl::Seconds(1));  // the process was stalled for a second
  const absl::Duration cost = Cost(DecodeBatch(1, 100));
  const int catch_up = static_cast<int>(std::ceil(kMaxCarriedLateness / cost));
  const int sleeps = clock.sleeps_;
  int steps = 0;
  while (clock.sleeps_ == sleeps && steps < 1000) {
    ASSERT_TRUE(backend->ForwardAndSample(DecodeBatch(1, 100, 7, true), Greedy(1), &out).ok());
    ++steps;
  }
  EXPECT_EQ(steps, catch_up + 1);  // not the ~170 steps a full second would take
}

TEST(SimBackendTest, EmptyStepCostsNothing) {
  FakeClock clock;
  auto backend = MakeSim(model::Llama31_8BShapeConfig(), &clock);
  SampledTokens out;
  ASSERT_TRUE(backend->ForwardAndSample(ForwardBatch(), {}, &out).ok());
  EXPECT_EQ(clock.sleeps_, 0);
  EXPECT_TRUE(out.token_ids.empty());
}

TEST(SimBackendTest, BadInputIsRefusedWithoutSleeping) {
  FakeClock clock;
  auto backend = MakeSim(model::TinyLlamaConfig(), &clock);
  SampledTokens out;
  ForwardBatch unknown_token = DecodeBatch(1, 20, /*token=*/600);
  EXPECT_EQ(backend->ForwardAndSample(unknown_token, Greedy(1), &out).code(),
            absl::StatusCode::kInvalidArgument);
  ForwardBatch short_table;
  short_table.AddSequence(std::vector<int32_t>(40, 1), 0, std::vector<int32_t>{0, 1});
  EXPECT_EQ(backend->ForwardAndSample(short_table, Greedy(1), &out).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(backend->ForwardAndSample(DecodeBatch(2, 20), Greedy(1), &out).code(),
            absl::StatusCode::kInvalidArgument);  // sampling for 1 of 2 sequences
  EXPECT_EQ(clock.sleeps_, 0);
  std::vector<float> logits;
  EXPECT_EQ(backend->Forward(DecodeBatch(1, 20), &logits).code(), absl::StatusCode::kUnimplemented);
  std::vector<float> k, v;
  EXPECT_EQ(backend->ReadKvBlock(0, 0, &k, &v).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(backend->CopyKvBlock(0, 5).ok());
  EXPECT_EQ(backend->CopyKvBlock(0, 256).code(), absl::StatusCode::kInvalidArgument);
}

TEST(SimBackendTest, CreationRefusesBadOptions) {
  const model::ModelConfig config = model::TinyLlamaConfig();
  SimBackendOptions options;
  options.kv_cache.num_blocks = 16;
  for (double speedup : {0.0, -1.0, std::nan("")}) {
    options.speedup = speedup;
    EXPECT_EQ(CreateSimBackend(config, options).status().code(), absl::StatusCode::kInvalidArgument)
        << speedup;
  }
  options.speedup = 1;
  options.profile.memory_efficiency = 2;
  EXPECT_EQ(CreateSimBackend(config, options).status().code(), absl::StatusCode::kInvalidArgument);
  options.profile = {};
  options.kv_cache.num_blocks = 0;
  EXPECT_EQ(CreateSimBackend(config, options).status().code(), absl::StatusCode::kInvalidArgument);
  options.kv_cache.num_blocks = 16;
  model::ModelConfig broken = config;
  broken.num_kv_heads = 3;  // 4 heads are not a multiple of 3
  EXPECT_EQ(CreateSimBackend(broken, options).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(CreateSimBackend(config, options).ok());
}

TEST(SimBackendTest, TokensAreUniformOverTheVocabularyWithoutEos) {
  FakeClock clock;
  auto backend = MakeSim(TinyWithTwoEos(), &clock);
  std::map<int32_t, int> counts;
  SampledTokens out;
  std::vector<TokenSampling> sampling(64, TokenSampling{.sample = true, .temperature = 1.0f});
  for (int step = 0; step < 160; ++step) {
    for (int s = 0; s < 64; ++s) {
      sampling[s].seed = static_cast<uint64_t>(s);
      sampling[s].output_position = static_cast<uint64_t>(step);
    }
    ASSERT_TRUE(backend->ForwardAndSample(DecodeBatch(64, 30), sampling, &out).ok());
    for (int32_t token : out.token_ids) ++counts[token];
    ASSERT_EQ(out.logprobs.size(), 64u);
    EXPECT_FLOAT_EQ(out.logprobs[0], -std::log(510.0f));  // 512 ids less 2 EOS
  }
  // 10240 draws over 510 ids: each about 20 times, none EOS, none outside.
  EXPECT_FALSE(counts.contains(3));
  EXPECT_FALSE(counts.contains(511));
  EXPECT_EQ(counts.size(), 510u);
  EXPECT_GE(counts.begin()->first, 0);
  EXPECT_LT(counts.rbegin()->first, 512);
  for (const auto& [token, count] : counts) EXPECT_LT(count, 60) << token;
}

TEST(SimBackendTest, TokensDependOnlyOnTheirInputs) {
  FakeClock clock;
  auto backend = MakeSim(TinyWithTwoEos(), &clock);
  SampledTokens a, b;
  // Greedy: a function of the last token and its position, whatever else is in the batch.
  ASSERT_TRUE(backend->ForwardAndSample(DecodeBatch(1, 50, 9), Greedy(1), &a).ok());
  ForwardBatch mixed;
  const std::vector<int32_t> blocks = {0, 1, 2, 3, 4};
  mixed.AddSequence(std::vector<int32_t>(30, 4), 0, blocks);
  mixed.AddSequence(std::vector<int32_t>{9}, 49, blocks);
  ASSERT_TRUE(backend->ForwardAndSample(mixed, Greedy(2), &b).ok());
  EXPECT_EQ(b.token_ids[1], a.token_ids[0]);
  std::set<int32_t> distinct;
  for (int32_t last = 0; last < 20; ++last) {
    ASSERT_TRUE(backend->ForwardAndSample(DecodeBatch(1, 50, last), Greedy(1), &a).ok());
    distinct.insert(a.token_ids[0]);
  }
  EXPECT_GE(distinct.size(), 18u);  // different contexts continue differently

  // Sampled: a function of (seed, output position) only.
  TokenSampling seeded{.sample = true, .temperature = 0.8f, .seed = 42, .output_position = 7};
  ASSERT_TRUE(backend->ForwardAndSample(DecodeBatch(1, 50, 1), {&seeded, 1}, &a).ok());
  ASSERT_TRUE(backend->ForwardAndSample(DecodeBatch(1, 90, 2), {&seeded, 1}, &b).ok());
  EXPECT_EQ(a.token_ids, b.token_ids);
  distinct.clear();
  for (uint64_t seed = 0; seed < 20; ++seed) {
    seeded.seed = seed;
    ASSERT_TRUE(backend->ForwardAndSample(DecodeBatch(1, 50, 1), {&seeded, 1}, &a).ok());
    distinct.insert(a.token_ids[0]);
  }
  EXPECT_GE(distinct.size(), 18u);

  // No token for a prefill chunk short of its prompt's end.
  std::vector<TokenSampling> partial = Greedy(2);
  partial[0].sample = false;
  ASSERT_TRUE(backend->ForwardAndSample(mixed, partial, &b).ok());
  EXPECT_EQ(b.token_ids[0], -1);
  EXPECT_GE(b.token_ids[1], 0);
}

// Passes every call to the sim backend and records whether the engine said the step
// followed the previous one straight away.
class FlagRecorder final : public Backend {
 public:
  explicit FlagRecorder(std::unique_ptr<Backend> inner) : inner_(std::move(inner)) {}
  const model::ModelConfig& config() const override { return inner_->config(); }
  const KvCacheOptions& kv_cache_options() const override { return inner_->kv_cache_options(); }
  absl::Status Forward(const ForwardBatch& batch, std::vector<float>* logits) override {
    return inner_->Forward(batch, logits);
  }
  bool SamplesTokens() const override { return inner_->SamplesTokens(); }
  absl::Status ForwardAndSample(const ForwardBatch& batch, std::span<const TokenSampling> sampling,
                                SampledTokens* out) override {
    flags.push_back(batch.follows_previous_step);
    return inner_->ForwardAndSample(batch, sampling, out);
  }
  absl::Status ReadKvBlock(int layer, int block, std::vector<float>* k,
                           std::vector<float>* v) const override {
    return inner_->ReadKvBlock(layer, block, k, v);
  }
  absl::Status CopyKvBlock(int src, int dst) override { return inner_->CopyKvBlock(src, dst); }

  std::vector<bool> flags;

 private:
  std::unique_ptr<Backend> inner_;
};

TEST(SimBackendTest, TheEngineMarksStepsThatFollowWithoutIdling) {
  FakeClock clock;
  FlagRecorder backend(MakeSim(model::TinyLlamaConfig(), &clock));
  engine::EngineOptions options;
  options.hash.block_size = 16;
  engine::Engine engine(&backend, options);
  engine::GenerationOptions generation;
  generation.max_tokens = 4;
  generation.ignore_eos = true;
  auto run = [&] {
    std::vector<engine::RequestOutput> outputs;
    while (!engine.idle()) ASSERT_TRUE(engine.Step(&outputs).ok());
  };
  ASSERT_TRUE(engine.Submit(1, {1, 2, 3, 4, 5}, generation, 0).ok());
  run();
  ASSERT_TRUE(engine.Submit(2, {6, 7, 8}, generation, 0).ok());
  run();
  // Each request: a prefill step after idling, then three decode steps straight after.
  EXPECT_EQ(backend.flags, (std::vector<bool>{false, true, true, true, false, true, true, true}));
  // On a clock that does not move by itself, the steps' sleeps add up to their modelled time.
  const sim::CostModel cost(model::TinyLlamaConfig(), model::DType::kBF16, {});
  EXPECT_GE(clock.slept_, cost.StepTime(sim::StepShape{.decode_sequences = 1, .sequences = 1}) * 8);
}

}  // namespace
}  // namespace kvc::backend
