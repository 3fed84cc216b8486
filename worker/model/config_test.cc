#include "worker/model/config.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvc::model {
namespace {

using ::testing::HasSubstr;

// The published Llama-3.2-1B config.json (abridged to the fields transformers reads).
constexpr char kLlama32Config[] = R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 128000, "eos_token_id": 128001, "head_dim": 64, "hidden_act": "silu",
  "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 8192,
  "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama",
  "num_attention_heads": 32, "num_hidden_layers": 16, "num_key_value_heads": 8,
  "pretraining_tp": 1, "rms_norm_eps": 1e-05,
  "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "rope_theta": 500000.0, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
  "transformers_version": "4.45.0.dev0", "use_cache": true, "vocab_size": 128256})";

constexpr char kQwen3Config[] = R"({
  "architectures": ["Qwen3ForCausalLM"], "attention_bias": false, "bos_token_id": 151643,
  "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu", "hidden_size": 1024,
  "intermediate_size": 3072, "max_position_embeddings": 40960, "max_window_layers": 28,
  "model_type": "qwen3", "num_attention_heads": 16, "num_hidden_layers": 28,
  "num_key_value_heads": 8, "rms_norm_eps": 1e-06, "rope_scaling": null,
  "rope_theta": 1000000, "sliding_window": null, "tie_word_embeddings": true,
  "torch_dtype": "bfloat16", "use_cache": true, "use_sliding_window": false,
  "vocab_size": 151936})";

constexpr char kQwen2Config[] = R"({
  "architectures": ["Qwen2ForCausalLM"], "hidden_size": 896, "intermediate_size": 4864,
  "num_attention_heads": 14, "num_hidden_layers": 24, "num_key_value_heads": 2,
  "vocab_size": 151936, "max_position_embeddings": 32768, "rope_theta": 1000000.0,
  "rms_norm_eps": 1e-06, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
  "sliding_window": 32768, "use_sliding_window": false, "bos_token_id": 151643,
  "eos_token_id": 151643})";

TEST(ModelConfigTest, ParsesLlama32) {
  auto parsed = ParseModelConfig(kLlama32Config);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const ModelConfig& c = parsed->config;
  EXPECT_EQ(c.architecture, Architecture::kLlama);
  EXPECT_EQ(c.hidden_size, 2048);
  EXPECT_EQ(c.num_layers, 16);
  EXPECT_EQ(c.num_heads, 32);
  EXPECT_EQ(c.num_kv_heads, 8);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.intermediate_size, 8192);
  EXPECT_EQ(c.vocab_size, 128256);
  EXPECT_EQ(c.max_position_embeddings, 131072);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  ASSERT_TRUE(c.rope_scaling.has_value());
  EXPECT_DOUBLE_EQ(c.rope_scaling->factor, 32.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling->low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling->high_freq_factor, 4.0);
  EXPECT_EQ(c.rope_scaling->original_max_position_embeddings, 8192);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_FALSE(c.qk_norm);
  EXPECT_EQ(c.dtype, DType::kBF16);
  EXPECT_TRUE(parsed->dtype_given);
  EXPECT_EQ(c.bos_token_id, 128000);
  EXPECT_EQ(c.eos_token_ids, std::vector<int>{128001});
  EXPECT_EQ(c.KvBytesPerToken(DType::kBF16), 2u * 16 * 8 * 64 * 2);
}

TEST(ModelConfigTest, ParsesQwen3WithQkNorm) {
  auto parsed = ParseModelConfig(kQwen3Config);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const ModelConfig& c = parsed->config;
  EXPECT_EQ(c.architecture, Architecture::kQwen3);
  EXPECT_EQ(c.head_dim, 128);  // explicit, != hidden / heads
  EXPECT_TRUE(c.qk_norm);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_FALSE(c.rope_scaling.has_value());
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
  EXPECT_EQ(c.sliding_window, 0);
}

TEST(ModelConfigTest, Qwen2AlwaysHasQkvBiasAndDerivesHeadDim) {
  auto parsed = ParseModelConfig(kQwen2Config);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(parsed->config.attention_bias);
  EXPECT_FALSE(parsed->config.o_proj_bias);
  EXPECT_EQ(parsed->config.head_dim, 64);
  EXPECT_EQ(parsed->config.num_kv_heads, 2);
}

TEST(ModelConfigTest, MistralAndDefaults) {
  auto parsed = ParseModelConfig(R"({"model_type": "mistral", "hidden_size": 64,
      "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128,
      "vocab_size": 300, "sliding_window": 4096, "eos_token_id": [2, 3]})");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const ModelConfig& c = parsed->config;
  EXPECT_EQ(c.architecture, Architecture::kMistral);
  EXPECT_EQ(c.num_kv_heads, 4);  // MHA when absent
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.sliding_window, 4096);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int>{2, 3}));
  EXPECT_FALSE(parsed->dtype_given);
  EXPECT_FALSE(c.bos_token_id.has_value());
}

TEST(ModelConfigTest, LlamaAttentionBiasCoversOProj) {
  std::string json = kLlama32Config;
  json.replace(json.find("\"attention_bias\": false"), 23, "\"attention_bias\": true");
  auto parsed = ParseModelConfig(json);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(parsed->config.attention_bias);
  EXPECT_TRUE(parsed->config.o_proj_bias);
}

TEST(ModelConfigTest, GenerationConfigOverridesSpecialTokens) {
  auto parsed = ParseModelConfig(
      kLlama32Config, R"({"bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009]})");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->config.eos_token_ids, (std::vector<int>{128001, 128008, 128009}));
  EXPECT_EQ(parsed->config.bos_token_id, 128000);
  // A generation config without ids leaves config.json's.
  parsed = ParseModelConfig(kLlama32Config, R"({"do_sample": true})");
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->config.eos_token_ids, std::vector<int>{128001});
}

struct BadCase {
  std::string from, to;
  absl::StatusCode code;
  std::string message;
};

TEST(ModelConfigTest, RefusesBadConfigsNamingTheField) {
  const BadCase cases[] = {
      {"\"LlamaForCausalLM\"", "\"GPT2LMHeadModel\"", absl::StatusCode::kUnimplemented,
       "GPT2LMHeadModel"},
      {"\"rope_type\": \"llama3\"", "\"rope_type\": \"yarn\"", absl::StatusCode::kUnimplemented,
       "rope type \"yarn\""},
      {"\"factor\": 32.0,", "", absl::StatusCode::kInvalidArgument, "\"factor\""},
      {"\"hidden_size\": 2048", "\"hidden_size\": \"2048\"", absl::StatusCode::kInvalidArgument,
       "\"hidden_size\" must be an integer"},
      {"\"hidden_size\": 2048,", "", absl::StatusCode::kInvalidArgument, "missing \"hidden_size\""},
      {"\"num_key_value_heads\": 8", "\"num_key_value_heads\": 5",
       absl::StatusCode::kInvalidArgument, "not a multiple"},
      {"\"torch_dtype\": \"bfloat16\"", "\"torch_dtype\": \"int8\"",
       absl::StatusCode::kUnimplemented, "int8"},
      {"\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu\"", absl::StatusCode::kUnimplemented,
       "hidden_act"},
      {"\"mlp_bias\": false", "\"mlp_bias\": true", absl::StatusCode::kUnimplemented, "mlp_bias"},
      {"\"eos_token_id\": 128001", "\"eos_token_id\": 999999", absl::StatusCode::kInvalidArgument,
       "eos_token_id"},
      {"\"vocab_size\": 128256", "\"vocab_size\": -1", absl::StatusCode::kInvalidArgument,
       "vocab_size"},
      {"{", "[", absl::StatusCode::kInvalidArgument, "bad JSON"},
  };
  for (const BadCase& bad : cases) {
    std::string json = kLlama32Config;
    const size_t at = json.find(bad.from);
    ASSERT_NE(at, std::string::npos) << bad.from;
    json.replace(at, bad.from.size(), bad.to);
    auto parsed = ParseModelConfig(json);
    ASSERT_FALSE(parsed.ok()) << bad.to;
    EXPECT_EQ(parsed.status().code(), bad.code) << parsed.status();
    EXPECT_THAT(std::string(parsed.status().message()), HasSubstr(bad.message));
  }
}

TEST(ModelConfigTest, RoundTripsThroughJson) {
  for (const char* source : {kLlama32Config, kQwen3Config, kQwen2Config}) {
    auto parsed = ParseModelConfig(source);
    ASSERT_TRUE(parsed.ok());
    ModelConfig config = parsed->config;
    config.eos_token_ids = {1, 2};
    auto again = ParseModelConfig(ModelConfigToJson(config), GenerationConfigToJson(config));
    ASSERT_TRUE(again.ok()) << again.status();
    const ModelConfig& c = again->config;
    EXPECT_EQ(c.architecture, config.architecture);
    EXPECT_EQ(c.hidden_size, config.hidden_size);
    EXPECT_EQ(c.head_dim, config.head_dim);
    EXPECT_EQ(c.num_kv_heads, config.num_kv_heads);
    EXPECT_EQ(c.rope_scaling.has_value(), config.rope_scaling.has_value());
    EXPECT_EQ(c.tie_word_embeddings, config.tie_word_embeddings);
    EXPECT_EQ(c.attention_bias, config.attention_bias);
    EXPECT_EQ(c.qk_norm, config.qk_norm);
    EXPECT_EQ(c.dtype, config.dtype);
    EXPECT_EQ(c.bos_token_id, config.bos_token_id);
    EXPECT_EQ(c.eos_token_ids, config.eos_token_ids);
    EXPECT_DOUBLE_EQ(c.rope_theta, config.rope_theta);
    EXPECT_DOUBLE_EQ(c.rms_norm_eps, config.rms_norm_eps);
  }
}

}  // namespace
}  // namespace kvc::model
