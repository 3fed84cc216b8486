// The engine with the real CPU backend on a tiny random model, and with the sim backend
// (synthetic tokens, the backend samples): batching, prefix caching, preemption and the
// no-KV-cache mode must never change greedy outputs.
#include "worker/engine/engine.h"

#include <gtest/gtest.h>

#include <map>

#include "worker/backend/cpu/cpu_backend.h"
#include "worker/backend/sim/sim_backend.h"
#include "worker/model/presets.h"
#include "worker/model/random_weights.h"

namespace kvc::engine {
namespace {

model::ModelConfig TinyLlama() {
  model::ModelConfig config = model::TinyLlamaConfig();
  config.vocab_size = 256;
  config.max_position_embeddings = 1024;
  config.bos_token_id.reset();
  config.eos_token_ids = {255};
  return config;
}

// The backend the engine runs on: "cpu" or "sim".
class EngineTest : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() {
    weights_ = new model::ModelWeights(model::MakeRandomWeights(TinyLlama(), {.seed = 5}));
  }
  static void TearDownTestSuite() { delete weights_; }

  std::unique_ptr<Engine> MakeEngine(int num_blocks, EngineOptions options = {}) {
    absl::StatusOr<std::unique_ptr<backend::Backend>> backend;
    if (GetParam() == "sim") {
      backend::SimBackendOptions backend_options;
      backend_options.kv_cache.num_blocks = num_blocks;
      backend_options.speedup = 100;  // 3 us steps: the tiny model's cost is the overhead
      backend = backend::CreateSimBackend(weights_->config, backend_options);
    } else {
      backend::CpuBackendOptions backend_options;
      backend_options.kv_cache.num_blocks = num_blocks;
      backend_options.num_threads = 1;
      backend = backend::CreateCpuBackend(*weights_, backend_options);
    }
    EXPECT_TRUE(backend.ok()) << backend.status();
    backend_ = std::move(*backend);
    options.hash.block_size = 16;
    return std::make_unique<Engine>(backend_.get(), options);
  }

  static std::vector<int32_t> Prompt(int seed, int n) {
    std::vector<int32_t> p(n);
    for (int i = 0; i < n; ++i) p[i] = (seed * 31 + i * 7) % 250;
    return p;
  }

  static GenerationOptions Greedy(int max_tokens) {
    GenerationOptions options;
    options.max_tokens = max_tokens;
    options.ignore_eos = true;
    return options;
  }

  // Runs the engine until idle; returns each request's tokens and final output.
  static std::map<SequenceId, std::vector<int32_t>> RunAll(
      Engine* engine, std::map<SequenceId, RequestOutput>* finals = nullptr) {
    std::map<SequenceId, std::vector<int32_t>> tokens;
    std::vector<RequestOutput> outputs;
    for (int step = 0; !engine->idle() && step < 100000; ++step) {
      EXPECT_TRUE(engine->Step(&outputs).ok());
      for (RequestOutput& o : outputs) {
        auto& t = tokens[o.id];
        t.insert(t.end(), o.new_tokens.begin(), o.new_tokens.end());
        if (o.finish_reason != FinishReason::kNone && finals != nullptr) (*finals)[o.id] = o;
      }
      outputs.clear();
    }
    return tokens;
  }

  static model::ModelWeights* weights_;
  std::unique_ptr<backend::Backend> backend_;
};

model::ModelWeights* EngineTest::weights_ = nullptr;

TEST_P(EngineTest, BatchedRequestsMatchEachRunAlone) {
  std::map<SequenceId, std::vector<int32_t>> alone;
  for (int i = 0; i < 6; ++i) {
    auto engine = MakeEngine(256);
    ASSERT_TRUE(engine->Submit(i, Prompt(i, 5 + 23 * i), Greedy(20), 0).ok());
    alone[i] = RunAll(engine.get())[i];
    ASSERT_EQ(alone[i].size(), 20u);
  }
  // Together, with a small token budget so that prefills are chunked and mixed with decodes.
  EngineOptions options;
  options.scheduler.max_num_batched_tokens = 24;
  auto engine = MakeEngine(256, options);
  for (int i = 0; i < 6; ++i)
    ASSERT_TRUE(engine->Submit(i, Prompt(i, 5 + 23 * i), Greedy(20), 0).ok());
  EXPECT_EQ(RunAll(engine.get()), alone);
}

TEST_P(EngineTest, CachedPrefixGivesTheSameTokensAndIsReported) {
  auto engine = MakeEngine(256);
  const std::vector<int32_t> prompt = Prompt(9, 100);
  std::map<SequenceId, RequestOutput> finals;
  ASSERT_TRUE(engine->Submit(1, prompt, Greedy(16), 0).ok());
  const auto cold = RunAll(engine.get(), &finals);
  ASSERT_TRUE(engine->Submit(2, prompt, Greedy(16), 0).ok());
  const auto warm = RunAll(engine.get(), &finals);
  EXPECT_EQ(warm.at(2), cold.at(1));
  EXPECT_EQ(finals[1].cached_prompt_tokens, 0);
  EXPECT_EQ(finals[2].cached_prompt_tokens, 96);  // 6 full blocks of the 100-token prompt
  EXPECT_EQ(finals[2].prompt_tokens, 100);
  EXPECT_EQ(finals[2].completion_tokens, 16);
}

TEST_P(EngineTest, PreemptionDoesNotChangeOutputs) {
  std::map<SequenceId, std::vector<int32_t>> alone;
  for (int i = 0; i < 4; ++i) {
    auto engine = MakeEngine(64);
    ASSERT_TRUE(engine->Submit(i, Prompt(40 + i, 30), Greedy(60), 0).ok());
    alone[i] = RunAll(engine.get())[i];
  }
  // Four sequences of up to 90 tokens (6 blocks each) in a 14-block pool must preempt.
  auto engine = MakeEngine(14);
  for (int i = 0; i < 4; ++i)
    ASSERT_TRUE(engine->Submit(i, Prompt(40 + i, 30), Greedy(60), 0).ok());
  EXPECT_EQ(RunAll(engine.get()), alone);
}

TEST_P(EngineTest, NoKvCacheModeGivesTheSameTokens) {
  auto cached = MakeEngine(64);
  ASSERT_TRUE(cached->Submit(1, Prompt(3, 40), Greedy(32), 0).ok());
  const auto with_cache = RunAll(cached.get());
  EngineOptions options;
  options.no_kv_cache = true;
  auto recompute = MakeEngine(64, options);
  ASSERT_TRUE(recompute->Submit(1, Prompt(3, 40), Greedy(32), 0).ok());
  EXPECT_EQ(RunAll(recompute.get()), with_cache);
}

TEST_P(EngineTest, SeededSamplingIsReproducible) {
  GenerationOptions options = Greedy(24);
  options.sampling.temperature = 1.0f;
  options.sampling.top_p = 0.9f;
  auto a = MakeEngine(64);
  ASSERT_TRUE(a->Submit(1, Prompt(1, 20), options, 1234).ok());
  ASSERT_TRUE(a->Submit(2, Prompt(1, 20), options, 1234).ok());
  ASSERT_TRUE(a->Submit(3, Prompt(1, 20), options, 99).ok());
  const auto tokens = RunAll(a.get());
  EXPECT_EQ(tokens.at(1), tokens.at(2));
  EXPECT_NE(tokens.at(1), tokens.at(3));
}

TEST_P(EngineTest, StopsAtStopTokensAndEos) {
  auto engine = MakeEngine(64);
  ASSERT_TRUE(engine->Submit(1, Prompt(2, 20), Greedy(30), 0).ok());
  const auto free_run = RunAll(engine.get()).at(1);
  GenerationOptions options = Greedy(30);
  options.stop_token_ids = {free_run[5]};
  std::map<SequenceId, RequestOutput> finals;
  ASSERT_TRUE(engine->Submit(2, Prompt(2, 20), options, 0).ok());
  const auto stopped = RunAll(engine.get(), &finals).at(2);
  EXPECT_EQ(finals[2].finish_reason, FinishReason::kStop);
  EXPECT_EQ(stopped.back(), free_run[5]);
  EXPECT_LE(stopped.size(), 6u);
}

TEST_P(EngineTest, RejectsBadRequests) {
  auto engine = MakeEngine(8);  // 128 tokens of KV
  EXPECT_EQ(engine->Submit(1, {}, Greedy(4), 0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine->Submit(1, {1, 300}, Greedy(4), 0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine->Submit(1, {1, -2}, Greedy(4), 0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine->Submit(1, {1}, Greedy(0), 0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine->Submit(1, Prompt(0, 1000), Greedy(100), 0).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine->Submit(1, Prompt(0, 200), Greedy(10), 0).code(),
            absl::StatusCode::kResourceExhausted);
  GenerationOptions bad = Greedy(4);
  bad.sampling.top_k = -1;
  EXPECT_EQ(engine->Submit(1, {1}, bad, 0).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(engine->Submit(1, {1, 2, 3}, Greedy(4), 0).ok());
  EXPECT_EQ(engine->Submit(1, {1, 2, 3}, Greedy(4), 0).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(RunAll(engine.get()).at(1).size(), 4u);
}

TEST_P(EngineTest, CancelFreesBlocksAtOnce) {
  auto engine = MakeEngine(32);
  ASSERT_TRUE(engine->Submit(1, Prompt(5, 60), Greedy(200), 0).ok());
  std::vector<RequestOutput> outputs;
  ASSERT_TRUE(engine->Step(&outputs).ok());
  EXPECT_LT(engine->Load().free_blocks, 32);
  EXPECT_TRUE(engine->Cancel(1));
  EXPECT_FALSE(engine->Cancel(1));
  EXPECT_EQ(engine->Load().free_blocks, 32);
  outputs.clear();
  ASSERT_TRUE(engine->Step(&outputs).ok());
  ASSERT_EQ(outputs.size(), 1u);
  EXPECT_EQ(outputs[0].finish_reason, FinishReason::kCancelled);
  EXPECT_TRUE(engine->idle());
}

INSTANTIATE_TEST_SUITE_P(Backends, EngineTest, ::testing::Values("cpu", "sim"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

}  // namespace
}  // namespace kvc::engine
