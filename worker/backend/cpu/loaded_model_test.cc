// The CPU backend on models as the loader produces them: config.json text in each
// architecture's Hugging Face spelling, parsed by worker/model, with the deterministic random
// weights that kvc-make-model writes (MakeRandomWeights equals LoadModel of the written files).
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "worker/backend/cpu/cpu_backend.h"
#include "worker/backend/cpu/reference_model.h"
#include "worker/backend/generate.h"
#include "worker/model/config.h"
#include "worker/model/random_weights.h"

namespace kvc::backend::cpu {
namespace {

struct Case {
  std::string name;
  std::string config_json;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

const char* kLlama3 = R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64,
  "intermediate_size": 160, "num_hidden_layers": 2, "num_attention_heads": 4,
  "num_key_value_heads": 1, "head_dim": 16, "vocab_size": 300, "max_position_embeddings": 2048,
  "rms_norm_eps": 1e-05, "rope_theta": 500000.0, "tie_word_embeddings": true,
  "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                   "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
  "hidden_act": "silu", "torch_dtype": "bfloat16", "bos_token_id": 1, "eos_token_id": 2})";

const char* kMistral = R"({"architectures": ["MistralForCausalLM"], "hidden_size": 64,
  "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
  "num_key_value_heads": 2, "vocab_size": 300, "max_position_embeddings": 2048,
  "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "tie_word_embeddings": false,
  "sliding_window": 40, "hidden_act": "silu", "torch_dtype": "float16"})";

const char* kQwen2 = R"({"architectures": ["Qwen2ForCausalLM"], "hidden_size": 64,
  "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
  "num_key_value_heads": 2, "vocab_size": 300, "max_position_embeddings": 2048,
  "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "tie_word_embeddings": true,
  "sliding_window": 2048, "use_sliding_window": false, "hidden_act": "silu",
  "torch_dtype": "bfloat16"})";

const char* kQwen3 = R"({"architectures": ["Qwen3ForCausalLM"], "hidden_size": 64,
  "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
  "num_key_value_heads": 2, "head_dim": 32, "vocab_size": 300, "max_position_embeddings": 2048,
  "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "tie_word_embeddings": true,
  "attention_bias": false, "hidden_act": "silu", "torch_dtype": "float32"})";

class LoadedModelTest : public ::testing::TestWithParam<Case> {};

TEST_P(LoadedModelTest, BackendMatchesReferenceAndCacheMatchesRecompute) {
  absl::StatusOr<model::ParsedConfig> parsed = model::ParseModelConfig(GetParam().config_json);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const model::ModelWeights w = model::MakeRandomWeights(parsed->config, {.seed = 9});
  CpuBackendOptions options;
  options.kv_cache.num_blocks = 32;
  options.kv_cache.dtype = model::DType::kF32;
  options.memory_bound_threads = 1;
  absl::StatusOr<std::unique_ptr<Backend>> backend = CreateCpuBackend(w, options);
  ASSERT_TRUE(backend.ok()) << backend.status();

  std::vector<int32_t> prompt(70);
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = int32_t((i * 37 + 11) % 300);
  const std::vector<int32_t> table = {7, 3, 9, 1, 30};
  ForwardBatch batch;
  batch.AddSequence(prompt, 0, table);
  batch.all_logits = true;
  std::vector<float> logits;
  ASSERT_TRUE((*backend)->Forward(batch, &logits).ok());
  const auto expected = ReferenceModel(w).Forward(prompt);
  for (size_t t = 0; t < prompt.size(); ++t) {
    double err = 0, scale = 1e-6;
    for (int v = 0; v < 300; ++v) {
      err = std::max(err, std::fabs(logits[t * 300 + v] - expected[t][v]));
      scale = std::max(scale, std::fabs(expected[t][v]));
    }
    ASSERT_LT(err / scale, 2e-5) << "token " << t;
  }

  GenerateOptions gen;
  gen.max_new_tokens = 64;
  absl::StatusOr<std::vector<int32_t>> cached = GenerateGreedy(**backend, prompt, gen);
  gen.use_kv_cache = false;
  absl::StatusOr<std::vector<int32_t>> recomputed = GenerateGreedy(**backend, prompt, gen);
  ASSERT_TRUE(cached.ok() && recomputed.ok());
  EXPECT_EQ(*cached, *recomputed);
}

INSTANTIATE_TEST_SUITE_P(Architectures, LoadedModelTest,
                         ::testing::Values(Case{"Llama3", kLlama3}, Case{"Mistral", kMistral},
                                           Case{"Qwen2", kQwen2}, Case{"Qwen3", kQwen3}),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return info.param.name;
                         });

}  // namespace
}  // namespace kvc::backend::cpu
