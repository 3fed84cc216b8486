#include "worker/model/loader.h"

#include <unistd.h>

#include <cstring>
#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/model/config.h"
#include "worker/model/random_weights.h"
#include "worker/model/safetensors_writer.h"
#include "worker/model/tensor_specs.h"

namespace kvc::model {
namespace {

using ::testing::HasSubstr;

class TempDir {
 public:
  TempDir() {
    char templ[] = "/tmp/kvc_loader_test_XXXXXX";
    path_ = ::mkdtemp(templ);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

void WriteString(const std::filesystem::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

ModelConfig SmallConfig(Architecture architecture, DType dtype) {
  ModelConfig config;
  config.architecture = architecture;
  config.hidden_size = 32;
  config.num_layers = 2;
  config.num_heads = 4;
  config.num_kv_heads = 2;
  config.head_dim = 8;
  config.intermediate_size = 48;
  config.vocab_size = 100;
  config.max_position_embeddings = 256;
  config.dtype = dtype;
  config.attention_bias = architecture == Architecture::kQwen2;
  config.qk_norm = architecture == Architecture::kQwen3;
  config.bos_token_id = 1;
  config.eos_token_ids = {2};
  return config;
}

// Writes `config` with the random weights, tensors split over `shards` files; `skip` names a
// tensor to leave out.
void WriteModelDir(const std::filesystem::path& dir, const ModelConfig& config, int shards = 1,
                   const std::string& skip = "") {
  WriteString(dir / "config.json", ModelConfigToJson(config));
  const std::vector<TensorSpec> specs = ExpectedTensors(config);
  std::string weight_map;
  for (int shard = 0; shard < shards; ++shard) {
    const std::string name =
        shards == 1 ? std::string("model.safetensors")
                    : absl::StrCat("model-0000", shard + 1, "-of-0000", shards, ".safetensors");
    SafetensorsWriter writer;
    for (size_t i = size_t(shard); i < specs.size(); i += size_t(shards)) {
      if (specs[i].name == skip) continue;
      auto init = std::make_shared<TensorInitializer>(specs[i], config, InitOptions{});
      writer.Add(specs[i].name, config.dtype, specs[i].shape,
                 [init, &config](int64_t n, void* out) { init->Fill(config.dtype, n, out); });
      absl::StrAppend(&weight_map, weight_map.empty() ? "" : ",", "\"", specs[i].name, "\":\"",
                      name, "\"");
    }
    ASSERT_TRUE(writer.Write(dir / name).ok());
  }
  if (shards > 1) {
    WriteString(dir / "model.safetensors.index.json", "{\"weight_map\":{" + weight_map + "}}");
  }
}

// Every slot of `loaded` holds exactly the bytes MakeRandomWeights produces.
void ExpectEqualsRandomWeights(const ModelWeights& loaded) {
  const ModelWeights expected = MakeRandomWeights(loaded.config, InitOptions{});
  ModelWeights& mutable_loaded = const_cast<ModelWeights&>(loaded);
  ModelWeights& mutable_expected = const_cast<ModelWeights&>(expected);
  for (const TensorSpec& spec : ExpectedTensors(loaded.config)) {
    const TensorView& got = SlotOf(mutable_loaded, spec);
    const TensorView& want = SlotOf(mutable_expected, spec);
    ASSERT_FALSE(got.empty()) << spec.name;
    ASSERT_EQ(got.shape, spec.shape) << spec.name;
    ASSERT_EQ(got.dtype, loaded.config.dtype) << spec.name;
    ASSERT_EQ(std::memcmp(got.data, want.data, got.size_bytes()), 0) << spec.name;
  }
  if (loaded.config.tie_word_embeddings) {
    EXPECT_EQ(loaded.lm_head.data, loaded.embed_tokens.data);
  } else {
    EXPECT_NE(loaded.lm_head.data, loaded.embed_tokens.data);
  }
}

TEST(LoaderTest, LoadsEveryArchitectureAndDtype) {
  for (Architecture arch :
       {Architecture::kLlama, Architecture::kMistral, Architecture::kQwen2, Architecture::kQwen3}) {
    for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
      TempDir dir;
      ModelConfig config = SmallConfig(arch, dtype);
      config.tie_word_embeddings = arch == Architecture::kQwen3;
      WriteModelDir(dir.path(), config);
      auto weights = LoadModel(dir.path());
      ASSERT_TRUE(weights.ok()) << ArchitectureName(arch) << weights.status();
      EXPECT_EQ(weights->config.architecture, arch);
      ExpectEqualsRandomWeights(*weights);
      EXPECT_EQ(weights->layers[1].q_bias.empty(), arch != Architecture::kQwen2);
      EXPECT_EQ(weights->layers[1].k_norm.empty(), arch != Architecture::kQwen3);
      EXPECT_TRUE(weights->layers[1].o_bias.empty());
    }
  }
}

TEST(LoaderTest, LlamaAttentionBiasLoadsOBias) {
  TempDir dir;
  ModelConfig config = SmallConfig(Architecture::kLlama, DType::kBF16);
  config.attention_bias = config.o_proj_bias = true;
  WriteModelDir(dir.path(), config);
  auto weights = LoadModel(dir.path());
  ASSERT_TRUE(weights.ok()) << weights.status();
  EXPECT_FALSE(weights->layers[0].o_bias.empty());
  EXPECT_FALSE(weights->layers[0].v_bias.empty());
  ExpectEqualsRandomWeights(*weights);
}

TEST(LoaderTest, LoadsShardsAndOutlivesItsCaller) {
  TempDir dir;
  const ModelConfig config = SmallConfig(Architecture::kLlama, DType::kBF16);
  WriteModelDir(dir.path(), config, /*shards=*/3);
  std::vector<std::pair<uint64_t, uint64_t>> progress;
  LoadOptions options;
  options.prefault = true;
  options.progress = [&](uint64_t loaded, uint64_t total) { progress.push_back({loaded, total}); };
  auto weights = LoadModel(dir.path(), options);
  ASSERT_TRUE(weights.ok()) << weights.status();
  ExpectEqualsRandomWeights(*weights);
  ASSERT_GE(progress.size(), 2u);
  EXPECT_EQ(progress.back().first, progress.back().second);
  // Views stay valid through copies of the weights after the original is gone.
  ModelWeights copy = *weights;
  weights = absl::UnknownError("dropped");
  ExpectEqualsRandomWeights(copy);
}

TEST(LoaderTest, InfersDtypeWhenConfigHasNone) {
  TempDir dir;
  const ModelConfig config = SmallConfig(Architecture::kLlama, DType::kF16);
  WriteModelDir(dir.path(), config);
  std::string json = ModelConfigToJson(config);
  json.replace(json.find("\"torch_dtype\""), 13, "\"unused_key\"");
  WriteString(dir.path() / "config.json", json);
  auto weights = LoadModel(dir.path());
  ASSERT_TRUE(weights.ok()) << weights.status();
  EXPECT_EQ(weights->config.dtype, DType::kF16);
}

TEST(LoaderTest, ErrorsNameTheFileAndTensor) {
  const ModelConfig config = SmallConfig(Architecture::kLlama, DType::kBF16);
  {
    TempDir dir;
    WriteModelDir(dir.path(), config, 1, "model.layers.1.mlp.up_proj.weight");
    auto weights = LoadModel(dir.path());
    EXPECT_EQ(weights.status().code(), absl::StatusCode::kNotFound);
    EXPECT_THAT(
        std::string(weights.status().message()),
        HasSubstr("model.safetensors: missing tensor \"model.layers.1.mlp.up_proj.weight\""));
  }
  {
    TempDir dir;
    WriteModelDir(dir.path(), config);
    ModelConfig other = config;
    other.intermediate_size = 64;
    WriteString(dir.path() / "config.json", ModelConfigToJson(other));
    auto weights = LoadModel(dir.path());
    EXPECT_EQ(weights.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(weights.status().message()),
                HasSubstr("model.safetensors: tensor \"model.layers.0.mlp.gate_proj.weight\" has "
                          "shape [48, 32], expected [64, 32]"));
    other = config;
    other.dtype = DType::kF32;
    WriteString(dir.path() / "config.json", ModelConfigToJson(other));
    weights = LoadModel(dir.path());
    EXPECT_THAT(std::string(weights.status().message()), HasSubstr("has dtype BF16, expected F32"));
    LoadOptions lenient;
    lenient.require_config_dtype = false;
    EXPECT_TRUE(LoadModel(dir.path(), lenient).ok());
  }
  {
    // Weights with o_proj biases under a config without them.
    TempDir dir;
    ModelConfig biased = config;
    biased.attention_bias = biased.o_proj_bias = true;
    WriteModelDir(dir.path(), biased);
    WriteString(dir.path() / "config.json", ModelConfigToJson(config));
    auto weights = LoadModel(dir.path());
    EXPECT_EQ(weights.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(weights.status().message()),
                HasSubstr("model.safetensors: unexpected tensor \"model.layers.0.self_attn."));
    LoadOptions lenient;
    lenient.allow_unexpected_tensors = true;
    EXPECT_TRUE(LoadModel(dir.path(), lenient).ok());
  }
  {
    TempDir dir;
    auto weights = LoadModel(dir.path());
    EXPECT_EQ(weights.status().code(), absl::StatusCode::kNotFound);
    EXPECT_THAT(std::string(weights.status().message()), HasSubstr("config.json"));
    WriteString(dir.path() / "config.json", ModelConfigToJson(config));
    weights = LoadModel(dir.path());
    EXPECT_EQ(weights.status().code(), absl::StatusCode::kNotFound);
    EXPECT_THAT(std::string(weights.status().message()),
                HasSubstr("neither model.safetensors nor model.safetensors.index.json"));
  }
}

TEST(LoaderTest, RandomWeightsAreDeterministicAndSeeded) {
  const ModelConfig config = SmallConfig(Architecture::kQwen3, DType::kF32);
  const ModelWeights a = MakeRandomWeights(config, InitOptions{.seed = 7});
  const ModelWeights b = MakeRandomWeights(config, InitOptions{.seed = 7});
  const ModelWeights c = MakeRandomWeights(config, InitOptions{.seed = 8});
  EXPECT_EQ(std::memcmp(a.layers[1].down_proj.data, b.layers[1].down_proj.data,
                        a.layers[1].down_proj.size_bytes()),
            0);
  EXPECT_NE(std::memcmp(a.layers[1].down_proj.data, c.layers[1].down_proj.data,
                        a.layers[1].down_proj.size_bytes()),
            0);
  // Linear weights have about unit variance per input: std ~ 1/sqrt(in_features).
  const TensorView& w = a.layers[0].gate_proj;
  double sum = 0, sum_sq = 0;
  for (int64_t i = 0; i < w.numel(); ++i) {
    const double v = static_cast<const float*>(w.data)[i];
    sum += v;
    sum_sq += v * v;
  }
  const double mean = sum / double(w.numel());
  const double std_dev = std::sqrt(sum_sq / double(w.numel()) - mean * mean);
  EXPECT_NEAR(mean, 0.0, 0.02);
  EXPECT_NEAR(std_dev, 1.0 / std::sqrt(32.0), 0.02);
  // Norm weights hover around one.
  EXPECT_NEAR(static_cast<const float*>(a.norm.data)[0], 1.0, 0.35);
}

}  // namespace
}  // namespace kvc::model
